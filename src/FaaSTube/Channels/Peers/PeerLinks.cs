using System.Collections.Concurrent;

namespace FaaSTube.Channels.Peers;

/// <summary>
/// A fetch's two clients and their shared window (<see cref="TubeClient.CopyToAsync"/>): a remote
/// client of the peer and a client of this node, both of one workflow.
/// </summary>
internal sealed class PeerLink(ClientWindow window, TubeClient peer, TubeClient node) : IAsyncDisposable
{
    public TubeClient Peer => peer;

    public TubeClient Node => node;

    /// <summary>A new link: a window of <paramref name="windowBytes"/>, then the peer's client over it, then this node's; what was made is closed if a step fails.</summary>
    public static async Task<PeerLink> OpenAsync(int windowBytes, Func<ClientWindow, Task<TubeClient>> connectPeer, Func<ClientWindow, Task<TubeClient>> connectNode)
    {
        var window = new ClientWindow(windowBytes);
        TubeClient? peer = null;
        try
        {
            peer = await connectPeer(window).ConfigureAwait(false);
            return new PeerLink(window, peer, await connectNode(window).ConfigureAwait(false));
        }
        catch
        {
            if (peer is not null)
            {
                await peer.DisposeAsync().ConfigureAwait(false);
            }

            window.Dispose();
            throw;
        }
    }

    /// <summary>When it was last given back (idle since).</summary>
    public long IdleSince { get; set; }

    /// <summary>Closes a link; a failure to close (its peer already gone) is nobody's concern.</summary>
    public static async Task CloseQuietlyAsync(PeerLink link)
    {
        try
        {
            await link.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is FaaSTubeException or IOException or ObjectDisposedException or InvalidOperationException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await node.DisposeAsync().ConfigureAwait(false);
        await peer.DisposeAsync().ConfigureAwait(false); // the endpoint's worker is gone: nothing of UCX writes the window any more
        window.Dispose();
    }
}

/// <summary>
/// Links kept between fetches, per (peer, workflow): a connection to a peer costs a UCX wire-up, a
/// handshake and a window's registration on both ends, far more than a small fetch's bytes, so a link
/// is given back after a fetch that went well and reused by the next one (one fetch per link at a
/// time). At most <see cref="MaxIdlePerKey"/> wait per key; one idle for <see cref="IdleTime"/> is
/// closed (on the next take or give-back, and when the pool is disposed). A link whose fetch failed is
/// closed, not kept; a fetch on a kept link that failed for another reason than NotFound is tried once
/// more on a new one (the peer may have restarted since). Real time, whatever clock the node runs on:
/// the links are connections.
/// </summary>
internal sealed class PeerLinks : IAsyncDisposable
{
    public const int MaxIdlePerKey = 2;

    public static readonly TimeSpan IdleTime = TimeSpan.FromSeconds(10);

    private readonly Func<PeerFetch, CancellationToken, Task<PeerLink>> _connect;
    private readonly TimeProvider _time = TimeProvider.System;
    private readonly ConcurrentDictionary<(string Address, string Workflow), ConcurrentStack<PeerLink>> _idle = new();
    private readonly ITimer _sweep;
    private int _disposed;

    private readonly TimeSpan _orphanTtl;

    /// <param name="connect">Opens a new link for a fetch.</param>
    /// <param name="orphanTtl">How long a copy nobody adopts stays (the fetch's timeout: after it, nobody will).</param>
    public PeerLinks(Func<PeerFetch, CancellationToken, Task<PeerLink>> connect, TimeSpan orphanTtl)
    {
        _connect = connect;
        _orphanTtl = orphanTtl;
        _sweep = _time.CreateTimer(static s => _ = ((PeerLinks)s!).CloseIdleAsync(), this, IdleTime, IdleTime);
    }

    /// <summary>Runs <paramref name="fetch"/> on a kept link of its peer and workflow, or a new one.</summary>
    public async Task<PeerFetched> FetchAsync(PeerFetch fetch, CancellationToken cancellationToken)
    {
        var key = (fetch.Address, fetch.Workflow);
        var kept = Take(key);
        if (kept is not null)
        {
            try
            {
                return await RunAsync(kept, key, fetch, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException && !(e is TubeException { Error: TubeError.NotFound or TubeError.AccessDenied or TubeError.OutOfMemory or TubeError.TooLarge }))
            {
                // The kept link broke (the peer or this node's connection went away meanwhile): once more on a new one.
            }
        }

        var link = await _connect(fetch, cancellationToken).ConfigureAwait(false);
        return await RunAsync(link, key, fetch, cancellationToken).ConfigureAwait(false);
    }

    private async Task<PeerFetched> RunAsync(PeerLink link, (string, string) key, PeerFetch fetch, CancellationToken cancellationToken)
    {
        PeerFetched fetched;
        try
        {
            fetched = await link.Peer.CopyToAsync(link.Node, fetch, _orphanTtl, cancellationToken).ConfigureAwait(false);
        }
        catch (TubeException e) when (e.Error == TubeError.NotFound && !link.Peer.LeftLease && link.Peer.IsConnected && link.Node.IsConnected)
        {
            await GiveBackAsync(key, link).ConfigureAwait(false); // the link is fine: the peer just has no such data
            throw;
        }
        catch
        {
            await link.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        await GiveBackAsync(key, link).ConfigureAwait(false);
        return fetched;
    }

    private PeerLink? Take((string, string) key)
    {
        if (!_idle.TryGetValue(key, out var stack))
        {
            return null;
        }

        while (stack.TryPop(out var link))
        {
            if (_time.GetElapsedTime(link.IdleSince) < IdleTime && link.Peer.IsConnected && link.Node.IsConnected)
            {
                return link;
            }

            _ = PeerLink.CloseQuietlyAsync(link); // too old, or broken: closed in the background
        }

        return null;
    }

    private async Task GiveBackAsync((string, string) key, PeerLink link)
    {
        link.IdleSince = _time.GetTimestamp();
        var stack = _idle.GetOrAdd(key, _ => new ConcurrentStack<PeerLink>());
        if (Volatile.Read(ref _disposed) != 0 || stack.Count >= MaxIdlePerKey)
        {
            await link.DisposeAsync().ConfigureAwait(false);
            return;
        }

        stack.Push(link); // old links are closed by the sweep, not on every fetch's give-back
        if (Volatile.Read(ref _disposed) != 0 && stack.TryPop(out var late))
        {
            await late.DisposeAsync().ConfigureAwait(false); // disposed meanwhile
        }
    }

    /// <summary>Closes every link idle for longer than <see cref="IdleTime"/> (or all, once disposed).</summary>
    private async Task CloseIdleAsync()
    {
        bool all = Volatile.Read(ref _disposed) != 0;
        foreach (var stack in _idle.Values)
        {
            var keep = new List<PeerLink>();
            while (stack.TryPop(out var link))
            {
                if (!all && _time.GetElapsedTime(link.IdleSince) < IdleTime)
                {
                    keep.Add(link);
                }
                else
                {
                    await PeerLink.CloseQuietlyAsync(link).ConfigureAwait(false);
                }
            }

            keep.Reverse();
            stack.PushRange([.. keep]);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Interlocked.Exchange(ref _disposed, 1);
        await _sweep.DisposeAsync().ConfigureAwait(false);
        await CloseIdleAsync().ConfigureAwait(false);
    }
}
