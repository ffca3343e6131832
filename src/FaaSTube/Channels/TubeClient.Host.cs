using FaaSTube.Channels.Protocol.Messages;

namespace FaaSTube.Channels;

/// <summary>The client's host-data path: Put from host memory and Get to host memory through the window.</summary>
public sealed partial class TubeClient
{
    /// <summary>Copies host data onto the GPU (through the pinned window, under the node's transfer scheduler) and returns its id.</summary>
    /// <param name="data">The bytes.</param>
    /// <param name="options">Consumers, TTL, placement, pinning, SLO.</param>
    /// <param name="cancellationToken">Stops between parts (the unfinished data is dropped).</param>
    public async Task<TubeId> PutAsync(ReadOnlyMemory<byte> data, PutOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new PutOptions();
        if (data.IsEmpty)
        {
            throw new ArgumentException("Put needs at least one byte.", nameof(data));
        }

        using var activity = Telemetry.ActivitySource.StartActivity("faastube.client.Put");
        var id = (await CallAsync(new PutBegin(data.Length, options.Device ?? 0), cancellationToken).ConfigureAwait(false)).Id;
        try
        {
            var parts = new List<Task>();
            int part = 0;
            for (long offset = 0; offset < data.Length; offset += _window.HalfBytes, part++)
            {
                int half = part % 2;
                int length = (int)Math.Min(_window.HalfBytes, data.Length - offset);
                await _halves[half].WaitAsync(cancellationToken).ConfigureAwait(false); // the node is done with this half
                _window.CopyIn(half, data.Span.Slice((int)offset, length));
                var request = new PutPart(id, offset, half * _window.HalfBytes, length, "", options.Transfer?.Slo?.Ticks ?? 0);
                parts.Add(ReleaseAfter(CallAsync(request, cancellationToken), _halves[half]));
            }

            await Task.WhenAll(parts).ConfigureAwait(false);
            await CallAsync(new PutCommit(id, options.Consumers, options.Ttl?.Ticks ?? 0, options.Pinned), cancellationToken).ConfigureAwait(false);
            return id;
        }
        catch (Exception e) when (e is not TubeNodeUnavailableException)
        {
            await TryReleaseAsync(id).ConfigureAwait(false); // drop the unfinished data
            throw;
        }
    }

    /// <summary>Copies the data of <paramref name="id"/> to host memory (DMA into the window), then releases this consumer's lease.</summary>
    /// <param name="id">The data.</param>
    /// <param name="destination">At least as long as the data.</param>
    /// <param name="cancellationToken">Cancels between parts.</param>
    /// <returns>The data's length.</returns>
    public async Task<long> GetAsync(TubeId id, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        long length = (await CallAsync(new Get(id, -1, PublishWaitMilliseconds), cancellationToken).ConfigureAwait(false)).Length;
        try
        {
            if (destination.Length < length)
            {
                throw new ArgumentException($"The destination has {destination.Length} bytes; {id} has {length}.", nameof(destination));
            }

            var parts = new List<Task>();
            int part = 0;
            for (long offset = 0; offset < length; offset += _window.HalfBytes, part++)
            {
                int half = part % 2;
                int n = (int)Math.Min(_window.HalfBytes, length - offset);
                await _halves[half].WaitAsync(cancellationToken).ConfigureAwait(false);
                var slice = destination.Slice((int)offset, n);
                var request = new GetToHost(id, offset, half * _window.HalfBytes, n);
                parts.Add(CopyOutAfter(CallAsync(request, cancellationToken), half, slice));
            }

            await Task.WhenAll(parts).ConfigureAwait(false);
        }
        finally
        {
            await TryReleaseAsync(id).ConfigureAwait(false);
        }

        return length;
    }

    /// <summary>One half of the window (tests read what the node copied into it).</summary>
    internal Memory<byte> WindowHalf(int half) => _window.Half(half);

    private static async Task ReleaseAfter(Task call, SemaphoreSlim half)
    {
        try
        {
            await call.ConfigureAwait(false);
        }
        finally
        {
            half.Release();
        }
    }

    private async Task CopyOutAfter(Task call, int half, Memory<byte> destination)
    {
        try
        {
            await call.ConfigureAwait(false);
            _window.CopyOut(half, destination.Span);
        }
        finally
        {
            _halves[half].Release();
        }
    }
}
