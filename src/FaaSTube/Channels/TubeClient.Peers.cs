using FaaSTube.Channels.Client;
using FaaSTube.Channels.Peers;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Channels.Remote;
using FaaSTube.Devices;
using FaaSTube.Hosting;

namespace FaaSTube.Channels;

/// <summary>
/// A node's fetch from a peer node (src/FaaSTube/Channels/Peers): two clients over ONE window, a
/// remote client of the peer and a client of this node. The peer's node writes each part into a
/// range of the window (UCX receives it there), and this node reads the same range to its GPU: the
/// bytes cross the host without a copy. Only the source's slots are rented; the target is never
/// asked to rent, so the two never hand out the same range.
/// </summary>
public sealed partial class TubeClient
{
    /// <summary>The window is the caller's (a peer copy's two clients share it): disposing the client leaves it.</summary>
    private bool _borrowedWindow;

    /// <summary>
    /// A copy from this client's node failed after its Get: the lease it took there is left, not
    /// released (a Release would count this fetch as a consumer of data it never delivered); closing
    /// this client gives it back without consuming. Its link must not be reused.
    /// </summary>
    internal bool LeftLease { get; private set; }

    /// <summary>A remote client of the peer at <see cref="TubeClientOptions.Address"/> over <paramref name="window"/> (the caller's; host data only, no GPU opened).</summary>
    internal static async Task<TubeClient> ConnectPeerAsync(TubeClientOptions options, ClientWindow window, FaaSTubeServices services, CancellationToken cancellationToken)
    {
        options.Validate();
        var remote = await RemoteWire.ResolveAsync(options.Address!, requireScheme: true, cancellationToken).ConfigureAwait(false);
        var client = new TubeClient(options, window, GpuSystem.HostOnly(), null, services) { _remote = true, _borrowedWindow = true };
        return await client.StartAsync(async () =>
        {
            var (connection, ok) = await RemoteConnection.ConnectAsync(remote, options.Address!, options, window.Memory, client.NewHello(), options.RemoteSecret!, client.OnOneWayFailed, cancellationToken).ConfigureAwait(false);
            client._connection = connection;
            return ok;
        }).ConfigureAwait(false);
    }

    /// <summary>A client of <paramref name="node"/> in this process over <paramref name="window"/> (the caller's), as workflow <paramref name="options"/>.Workflow.</summary>
    internal static async Task<TubeClient> ConnectPeerTargetAsync(TubeNode node, TubeClientOptions options, ClientWindow window, CancellationToken cancellationToken)
    {
        options.Validate();
        var client = new TubeClient(options, window, node.Gpus, node, node.Services) { _borrowedWindow = true };
        return await client.StartAsync(() =>
        {
            var (session, ok) = node.OpenInProcess(window.Duplicate(), client.NewHello());
            client._connection = new DirectConnection(session, client.OnOneWayFailed);
            return Task.FromResult(ok);
        }).ConfigureAwait(false);
    }

    /// <summary>A client over a connection made elsewhere (the network gateway's to its node, <c>GatewayHello</c>), on <paramref name="window"/> (the caller's), host data only.</summary>
    internal static async Task<TubeClient> ConnectOverAsync(TubeClientOptions options, ClientWindow window, Func<TubeClient, Task<(INodeConnection Connection, HelloOk Ok)>> connect)
    {
        var client = new TubeClient(options, window, GpuSystem.HostOnly(), null, FaaSTubeServices.Default) { _remote = true, _borrowedWindow = true };
        return await client.StartAsync(async () =>
        {
            var (connection, ok) = await connect(client).ConfigureAwait(false);
            client._connection = connection;
            return ok;
        }).ConfigureAwait(false);
    }

    /// <summary>The callbacks a connection made elsewhere reports to (a slab close, a one-way refusal).</summary>
    internal (Action<CloseSlab> CloseSlab, Action<TubeException, IRequest?> OneWayFailed) Callbacks => (OnCloseSlab, OnOneWayFailed);

    /// <summary>
    /// Copies <paramref name="fetch"/>'s data from this client's node (a peer) to <paramref name="target"/>'s,
    /// which must share this client's window: each part is read into a window range here and written
    /// from the same range there, several in flight. An id becomes a Put of its own on the target (its
    /// new id returned, which the target node adopts under the asked id); a name becomes a version of
    /// the same name there (cacheable). Nothing is left behind on failure: the unfinished Put is dropped
    /// and the lease here left to the connection's close (<see cref="LeftLease"/>): the source counts
    /// this fetch as a consumer only once the copy is committed. The copy's own Put expires after
    /// <paramref name="orphanTtl"/> if nobody adopts it (its asker gave up, or the gateway died before it answered).
    /// </summary>
    internal async Task<PeerFetched> CopyToAsync(TubeClient target, PeerFetch fetch, TimeSpan orphanTtl, CancellationToken cancellationToken)
    {
        if (!ReferenceEquals(target._window, _window))
        {
            throw new InvalidOperationException("A peer copy's two clients share one window.");
        }

        TubeId source;
        long length;
        PutOptions options;
        if (fetch.Name is { } name)
        {
            var ok = await CallAsync(new NamedGet(fetch.Namespace ?? "", name, -1, PublishWaitMilliseconds, Load: false), cancellationToken).ConfigureAwait(false);
            if (ok.Status != NamedGetStatus.Found)
            {
                throw new TubeException(TubeError.NotFound, $"'{name}' is being loaded on the peer and was not ready in time.");
            }

            (source, length) = (ok.Id, ok.Length);
            options = PutOptionsFor(name, new NamedOptions { Namespace = fetch.Namespace });
        }
        else
        {
            var id = fetch.Id ?? throw new ArgumentException("A peer fetch names an id or a name.", nameof(fetch));
            var ok = await CallAsync(new Get(id, -1, fetch.WaitMilliseconds), cancellationToken).ConfigureAwait(false); // the home node waits for a publish as for its own consumers
            (source, length) = (id, ok.Length);
            options = new PutOptions { Consumers = 1, Ttl = orphanTtl }; // adopted at once by the node, which sets the copy's lifetime
        }

        TubeId put = default;
        var parts = new List<Task>();
        try
        {
            put = await target.BeginPutAsync(length, options, cancellationToken).ConfigureAwait(false);
            for (long offset = 0; offset < length; offset += Slots.SlotBytes)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int n = (int)Math.Min(Slots.SlotBytes, length - offset);
                var range = await Slots.RentAsync(1, cancellationToken).ConfigureAwait(false);
                parts.Add(RelayPartAsync(target, source, put, offset, Slots.Offset(range), n, range));
            }

            await Task.WhenAll(parts).ConfigureAwait(false);
            long version = await target.CommitPutAsync(put, options, CancellationToken.None).ConfigureAwait(false); // once asked, it is known whether it committed
            await TryReleaseAsync(source).ConfigureAwait(false); // delivered: the source counts its consumer
            return new PeerFetched(fetch.Request, put, length, version);
        }
        catch
        {
            LeftLease = true;
            await Task.WhenAll(parts).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing); // no range goes back under either node's DMA
            if (put != default)
            {
                await target.DropAsync(put).ConfigureAwait(false);
            }

            throw;
        }
    }

    /// <summary>One part: the peer writes it into the range, then this node reads it from there; the range goes back after both.</summary>
    private async Task RelayPartAsync(TubeClient target, TubeId source, TubeId put, long offset, int windowOffset, int length, WindowRange range)
    {
        try
        {
            await CallAsync(new GetToHost(source, offset, windowOffset, length), CancellationToken.None).ConfigureAwait(false);
            await target.PutPartAsync(put, offset, windowOffset, length, 0).ConfigureAwait(false);
        }
        finally
        {
            Slots.Return(range);
        }
    }
}
