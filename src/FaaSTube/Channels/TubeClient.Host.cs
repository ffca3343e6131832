using System.Diagnostics;
using FaaSTube.Channels.Client;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Channels.Remote;
using FaaSTube.Diagnostics;

namespace FaaSTube.Channels;

/// <summary>
/// The client's host-data path through the window (shared memory the node registered once and DMAs
/// to and from), cut into slots (<see cref="WindowSlots"/>): a Put from window memory
/// (<see cref="RentWindowAsync"/>, <see cref="CreatePutWriterAsync"/>) copies nothing on the host; a
/// Put from ordinary memory copies each slot with several threads while the node DMAs the slot
/// before; a Get to host memory copies each slot out while the next parts are in flight.
/// </summary>
public sealed partial class TubeClient
{
    private WindowSlots? _slots;
    private long _hostBytesCopied;

    /// <summary>The longest <see cref="WindowBuffer"/> <see cref="RentWindowAsync"/> hands out (the window's whole slots).</summary>
    public int MaxWindowBufferLength => Slots.MaxRangeBytes;

    /// <summary>Bytes per window slot: the most a <see cref="TubePutWriter"/>'s <see cref="TubePutWriter.GetMemory"/> returns, and the largest size hint it takes.</summary>
    public int WindowSlotLength => Slots.SlotBytes;

    /// <summary>Bytes this client copied on the host between caller memory and its window (a Put or Get from window memory adds none).</summary>
    internal long HostBytesCopied => Interlocked.Read(ref _hostBytesCopied);

    /// <summary>Window slots rented now (by buffers, writers and parts in flight).</summary>
    internal int WindowSlotsInUse => Slots.InUse;

    /// <summary>The whole window (tests read what the node copied into it).</summary>
    internal Memory<byte> WindowMemory => _window.Memory;

    private WindowSlots Slots => Volatile.Read(ref _slots) ?? CreateSlots();

    /// <summary>
    /// Rents <paramref name="length"/> bytes of the window to write a Put's data into in place: then
    /// <see cref="PutAsync(WindowBuffer, PutOptions?, CancellationToken)"/> sends it by DMA alone. Waits
    /// while the window is in use by other buffers, writers and parts.
    /// </summary>
    /// <param name="length">1 to <see cref="MaxWindowBufferLength"/> bytes.</param>
    /// <param name="cancellationToken">Stops the wait (nothing is rented then).</param>
    /// <returns>The buffer: put it, or dispose it.</returns>
    public async ValueTask<WindowBuffer> RentWindowAsync(int length, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        if (length > Slots.MaxRangeBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"The window lends at most {Slots.MaxRangeBytes} bytes at once (TubeClientOptions.WindowBytes); use CreatePutWriterAsync for more.");
        }

        var range = await Slots.RentAsync(Slots.SlotsFor(length), cancellationToken).ConfigureAwait(false);
        return new WindowBuffer(Slots, range, _window.Memory.Slice(Slots.Offset(range), length));
    }

    /// <summary>
    /// Puts the data written into a rented window buffer onto the GPU: the node DMAs it from the window,
    /// nothing is copied on the host. The Put takes the buffer over, whether it succeeds or not: its
    /// range goes back to the window once the node has read it.
    /// </summary>
    /// <param name="buffer">From <see cref="RentWindowAsync"/> of this client, neither put nor disposed; all of its <see cref="WindowBuffer.Length"/> bytes are the data.</param>
    /// <param name="options">Consumers, TTL, placement, pinning, SLO.</param>
    /// <param name="cancellationToken">Cancels before the copy or the commit (the unfinished data is dropped).</param>
    /// <exception cref="ObjectDisposedException">The buffer was put or disposed already.</exception>
    /// <exception cref="ArgumentException">The buffer is another client's.</exception>
    public async Task<TubeId> PutAsync(WindowBuffer buffer, PutOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        var range = buffer.TakeForPut(Slots);
        using var call = Call("put", device: options?.Device ?? 0);
        call.Path = TubePath.HostStaged.Tag();
        options ??= new PutOptions();
        if (options.Named is null && !cancellationToken.CanBeCanceled)
        {
            try
            {
                return await PutWholeAsync(Slots.Offset(range), buffer.Length, options).ConfigureAwait(false);
            }
            catch (Exception e) when (call.Failed(e))
            {
                throw;
            }
            finally
            {
                Slots.Return(range); // answered (or the connection is gone): the node reads the range no more
            }
        }

        PendingPut put;
        try
        {
            put = await PendingPut.BeginAsync(this, buffer.Length, options, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            call.Failed(e);
            Slots.Return(range);
            throw;
        }

        try
        {
            put.Send(0, Slots.Offset(range), buffer.Length, () => Slots.Return(range));
            return await put.CommitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    /// <summary>
    /// Starts a Put of <paramref name="length"/> bytes written straight into the window, slot by slot,
    /// for data larger than a rented buffer or produced as a stream: see <see cref="TubePutWriter"/>.
    /// </summary>
    /// <param name="length">The data's length (at least one byte).</param>
    /// <param name="options">Consumers, TTL, placement, pinning, SLO.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <returns>The writer: complete it (the id) or dispose it (the data is dropped).</returns>
    public async Task<TubePutWriter> CreatePutWriterAsync(long length, PutOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        using var call = Call("create_put_writer", device: options?.Device ?? 0);
        call.Path = TubePath.HostStaged.Tag();
        try
        {
            return await NewPutWriterAsync(length, options, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    private async Task<TubePutWriter> NewPutWriterAsync(long length, PutOptions? options, CancellationToken cancellationToken)
    {
        var put = await PendingPut.BeginAsync(this, length, options ?? new PutOptions(), cancellationToken).ConfigureAwait(false);
        return new TubePutWriter(Slots, _window.Memory, put, length);
    }

    /// <summary>
    /// Copies host data onto the GPU and returns its id: each window slot is filled by several threads
    /// while the node DMAs the slot before (under its transfer scheduler). To skip the host copy,
    /// write into the window instead (<see cref="RentWindowAsync"/>, <see cref="CreatePutWriterAsync"/>).
    /// </summary>
    /// <param name="data">The bytes.</param>
    /// <param name="options">Consumers, TTL, placement, pinning, SLO.</param>
    /// <param name="cancellationToken">Stops between parts (the unfinished data is dropped). Data of at most a window slot goes in one request when nothing can cancel the call.</param>
    public async Task<TubeId> PutAsync(ReadOnlyMemory<byte> data, PutOptions? options = null, CancellationToken cancellationToken = default)
    {
        if (data.IsEmpty)
        {
            throw new ArgumentException("Put needs at least one byte.", nameof(data));
        }

        using var call = Call("put", device: options?.Device ?? 0);
        call.Path = TubePath.HostStaged.Tag();
        try
        {
            options ??= new PutOptions();
            if (data.Length <= Slots.SlotBytes && options.Named is null && !cancellationToken.CanBeCanceled)
            {
                return await PutSlotAsync(data, options).ConfigureAwait(false); // one request: nothing can cancel it (below)
            }

            if (_remote)
            {
                return await PutFromMemoryRemoteAsync(data, options, cancellationToken).ConfigureAwait(false);
            }

            await using var writer = await NewPutWriterAsync(data.Length, options, cancellationToken).ConfigureAwait(false);
            for (int offset = 0; offset < data.Length;)
            {
                await writer.FlushAsync(cancellationToken).ConfigureAwait(false); // a free slot; the slot before is in flight
                var slot = writer.GetMemory();
                CopyCounted(data.Slice(offset, slot.Length), slot, "to_window");
                writer.Advance(slot.Length);
                offset += slot.Length;
            }

            return await writer.CommitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    /// <summary>
    /// Copies the data of <paramref name="id"/> to host memory, then releases this consumer's lease:
    /// the node DMAs parts into window slots, and each slot is copied out by several threads while the
    /// next parts are in flight.
    /// </summary>
    /// <param name="id">The data.</param>
    /// <param name="destination">At least as long as the data.</param>
    /// <param name="cancellationToken">Stops between parts (the lease is released all the same). When nothing can cancel the call, data of at most a window slot comes in one request.</param>
    /// <returns>The data's length.</returns>
    public async Task<long> GetAsync(TubeId id, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        using var call = Call("get_to_memory", id);
        try
        {
            return await GetToHostCoreAsync(id, destination, call, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    private async Task<long> GetToHostCoreAsync(TubeId id, Memory<byte> destination, ClientCall call, CancellationToken cancellationToken)
    {
        // One request when the data may fit a slot and nothing can cancel the call: GetWhole cannot be
        // stopped once sent (its slot is the node's until answered); a cancellable call waits for the
        // Get's answer (a publish may be slow to come) and then moves parts.
        // It asks for published data only (no wait): a Get that must wait for its producer's Publish
        // holds no slot meanwhile (its own Puts may need them), it waits as a Get.
        bool whole = !destination.IsEmpty && !cancellationToken.CanBeCanceled;
        GetOk? fitted = null;
        if (whole)
        {
            try
            {
                fitted = await GetSlotAsync(id, destination[..Math.Min(destination.Length, Slots.SlotBytes)]).ConfigureAwait(false);
            }
            catch (TubeException e) when (e.Error == TubeError.NotFound && PublishWaitMilliseconds > 0)
            {
                whole = false; // not published yet (or not there): the Get below waits for it
            }
        }

        var ok = fitted ?? await CallAsync(new Get(id, -1, PublishWaitMilliseconds), cancellationToken).ConfigureAwait(false);
        call.Path = ok.Path.Tag();
        if (whole && ok.Length <= Math.Min(destination.Length, Slots.SlotBytes))
        {
            return ok.Length; // it fitted one slot: copied and released by the node in the same request
        }

        return await CopyLeasedToHostAsync(id, ok.Length, destination, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// A Get to the host in one request (GetWhole) through one window slot: data that fits
    /// <paramref name="destination"/> is in it on return, and this consumer is done (the node released
    /// its lease); longer data is leased as by a Get (its length returned), for parts and a Release.
    /// </summary>
    private async Task<GetOk> GetSlotAsync(TubeId id, Memory<byte> destination)
    {
        var range = await Slots.RentAsync(1, CancellationToken.None).ConfigureAwait(false);
        try
        {
            var whole = new GetWhole(id, Slots.Offset(range), destination.Length, 0); // no wait for a publish while a slot is held: that Get follows without one
            if (Connection is RemoteConnection remote)
            {
                ThrowOneWayFailure();
                return await remote.GetWholeIntoAsync(whole, destination).ConfigureAwait(false); // straight into the caller's memory
            }

            var ok = await CallAsync(whole, CancellationToken.None).ConfigureAwait(false);
            if (ok.Length <= destination.Length)
            {
                CopyCounted(_window.Memory.Slice(whole.WindowOffset, (int)ok.Length), destination, "from_window");
            }

            return ok;
        }
        finally
        {
            Slots.Return(range);
        }
    }

    /// <summary>
    /// A Put of data that fits one window slot in one request (PutWhole): copied into the slot (a
    /// remote client's bytes are sent from <paramref name="data"/> itself), then begun, copied to the
    /// GPU and committed by the node. Taken only when nothing can cancel the call: once sent, it is
    /// the node's until answered (a cancellable Put stops between its PutBegin, parts and commit).
    /// </summary>
    private async Task<TubeId> PutSlotAsync(ReadOnlyMemory<byte> data, PutOptions options)
    {
        var range = await Slots.RentAsync(1, CancellationToken.None).ConfigureAwait(false);
        try
        {
            if (_remote)
            {
                return await PutWholeAsync(Slots.Offset(range), data.Length, options, data).ConfigureAwait(false);
            }

            CopyCounted(data, _window.Memory.Slice(Slots.Offset(range), data.Length), "to_window");
            return await PutWholeAsync(Slots.Offset(range), data.Length, options).ConfigureAwait(false);
        }
        finally
        {
            Slots.Return(range); // answered (or the connection is gone): the node reads the range no more
        }
    }

    /// <summary>PutWhole of the window range [<paramref name="windowOffset"/>, +<paramref name="length"/>), or, for a remote client, of <paramref name="source"/>'s bytes received into it.</summary>
    private async Task<TubeId> PutWholeAsync(int windowOffset, int length, PutOptions options, ReadOnlyMemory<byte> source = default)
    {
        var whole = new PutWhole(length, options.Device ?? 0, windowOffset, options.Transfer?.Slo?.Ticks ?? 0, options.Consumers, options.Ttl?.Ticks ?? 0, options.KeepUntilDeleted);
        if (source.IsEmpty)
        {
            return (await CallAsync(whole, CancellationToken.None).ConfigureAwait(false)).Id;
        }

        ThrowOneWayFailure();
        return (await ((RemoteConnection)Connection).PutWholeFromAsync(whole, source).ConfigureAwait(false)).Id;
    }

    /// <summary>The parts of a block this client leased for a host read (<paramref name="id"/>, <paramref name="length"/> bytes) into <paramref name="destination"/>; then the lease is released.</summary>
    private async Task<long> CopyLeasedToHostAsync(TubeId id, long length, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var parts = new List<Task>();
        try
        {
            if (destination.Length < length)
            {
                throw new ArgumentException($"The destination has {destination.Length} bytes; {id} has {length}.", nameof(destination));
            }

            for (long offset = 0; offset < length; offset += Slots.SlotBytes)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int n = (int)Math.Min(Slots.SlotBytes, length - offset);
                var range = await Slots.RentAsync(1, cancellationToken).ConfigureAwait(false);
                parts.Add(CopyOutAfterAsync(new GetToHost(id, offset, Slots.Offset(range), n), range, destination.Slice((int)offset, n)));
            }

            await Task.WhenAll(parts).ConfigureAwait(false);
        }
        finally
        {
            await Task.WhenAll(parts).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing); // no slot is reused under the node's DMA
            await TryReleaseAsync(id).ConfigureAwait(false);
        }

        return length;
    }

    /// <summary>
    /// The data of <paramref name="id"/> in window memory, by DMA only (nothing is copied on the host;
    /// the reverse of <see cref="PutAsync(WindowBuffer, PutOptions?, CancellationToken)"/>), then this
    /// consumer's lease is released. Read <see cref="WindowBuffer.Memory"/> and dispose the buffer to
    /// give the window range back. For data longer than <see cref="MaxWindowBufferLength"/>, use
    /// <see cref="GetAsync(TubeId, Memory{byte}, CancellationToken)"/>.
    /// </summary>
    /// <param name="id">The data.</param>
    /// <param name="cancellationToken">Stops before the parts are sent (the lease is released all the same).</param>
    /// <exception cref="ArgumentException">The data is longer than the window lends at once.</exception>
    public async Task<WindowBuffer> GetToWindowAsync(TubeId id, CancellationToken cancellationToken = default)
    {
        using var call = Call("get_to_window", id);
        try
        {
            return await GetToWindowCoreAsync(id, call, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    private async Task<WindowBuffer> GetToWindowCoreAsync(TubeId id, ClientCall call, CancellationToken cancellationToken)
    {
        var ok = await CallAsync(new Get(id, -1, PublishWaitMilliseconds), cancellationToken).ConfigureAwait(false);
        call.Path = ok.Path.Tag();
        WindowBuffer? buffer = null;
        var parts = new List<Task>();
        try
        {
            if (ok.Length > MaxWindowBufferLength)
            {
                throw new ArgumentException($"{id} has {ok.Length} bytes; the window lends at most {MaxWindowBufferLength} at once: use GetAsync into your own memory.", nameof(id));
            }

            buffer = await RentWindowAsync((int)ok.Length, cancellationToken).ConfigureAwait(false);
            for (int offset = 0; offset < buffer.Length; offset += Slots.SlotBytes)
            {
                int n = Math.Min(Slots.SlotBytes, buffer.Length - offset);
                parts.Add(CallAsync(new GetToHost(id, offset, buffer.WindowOffset + offset, n), CancellationToken.None));
            }

            await Task.WhenAll(parts).ConfigureAwait(false);
            return buffer;
        }
        catch
        {
            await Task.WhenAll(parts).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing); // no range goes back under the node's DMA
            buffer?.Dispose();
            throw;
        }
        finally
        {
            await TryReleaseAsync(id).ConfigureAwait(false);
        }
    }

    internal async Task<TubeId> BeginPutAsync(long length, PutOptions options, CancellationToken cancellationToken) =>
        (options.Named is { } named
            ? await CallAsync(new NamedPutBegin(named.Namespace, named.Name, length, options.Device ?? 0), cancellationToken).ConfigureAwait(false)
            : await CallAsync(new PutBegin(length, options.Device ?? 0), cancellationToken).ConfigureAwait(false)).Id;

    /// <summary>One part, waited for whatever the caller's cancellation (its window range is in the node's hands until answered); a remote client's <paramref name="source"/>, if not empty, is sent instead of the window range's bytes.</summary>
    internal Task PutPartAsync(TubeId id, long offset, int windowOffset, int length, long sloTicks, ReadOnlyMemory<byte> source = default)
    {
        var part = new PutPart(id, offset, windowOffset, length, "", sloTicks);
        if (source.IsEmpty)
        {
            return CallAsync(part, CancellationToken.None);
        }

        ThrowOneWayFailure();
        return ((RemoteConnection)Connection).PutPartFromAsync(part, source);
    }

    /// <summary>Makes a Put visible; a named one becomes its name's new version (returned; 0 for an id's Put).</summary>
    internal async Task<long> CommitPutAsync(TubeId id, PutOptions options, CancellationToken cancellationToken)
    {
        if (options.Named is { } named)
        {
            long loadTicks = Stopwatch.GetElapsedTime(named.StartedTimestamp).Ticks;
            return (await CallAsync(new NamedCommit(id, named.Cacheable, loadTicks), cancellationToken).ConfigureAwait(false)).Version;
        }

        await CallAsync(new PutCommit(id, options.Consumers, options.Ttl?.Ticks ?? 0, options.KeepUntilDeleted), cancellationToken).ConfigureAwait(false);
        return 0;
    }

    /// <summary>Drops an unfinished Put (nothing happens if the node has forgotten it or is gone).</summary>
    internal Task DropAsync(TubeId id) => TryReleaseAsync(id);

    private WindowSlots CreateSlots()
    {
        Interlocked.CompareExchange(ref _slots, new WindowSlots(_window.Length), null);
        return _slots;
    }

    private async Task CopyOutAfterAsync(GetToHost part, WindowRange range, Memory<byte> destination)
    {
        try
        {
            if (Connection is RemoteConnection remote)
            {
                // Over the network the part's bytes come as the answer's data: received straight into
                // the caller's memory, not into the window mirror and copied out (the range names the node's side).
                ThrowOneWayFailure();
                await remote.GetToHostIntoAsync(part, destination).ConfigureAwait(false);
                return;
            }

            await CallAsync(part, CancellationToken.None).ConfigureAwait(false);
            CopyCounted(_window.Memory.Slice(part.WindowOffset, part.Length), destination, "from_window");
        }
        finally
        {
            Slots.Return(range);
        }
    }

    /// <summary>The one host copy between caller memory and the window, in parallel, counted.</summary>
    private void CopyCounted(ReadOnlyMemory<byte> source, Memory<byte> destination, string direction)
    {
        HostCopy.Copy(source, destination);
        Interlocked.Add(ref _hostBytesCopied, source.Length);
        _metrics.HostCopyIo.Add(source.Length, new KeyValuePair<string, object?>(TelemetryTags.HostCopyDirection, direction));
    }
}
