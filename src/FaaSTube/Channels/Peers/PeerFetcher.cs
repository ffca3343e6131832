using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace FaaSTube.Channels.Peers;

/// <summary>
/// A node's fetches from its peers (<see cref="TubeNodeOptions.PeerNodes"/>): a Get of an id or a name this
/// node does not hold is served from the peer that does, copied once over the network into this
/// node's pool, then served as a local Get (zero copy on the GPU; later Gets find it here).
/// <list type="bullet">
/// <item>An id names its home node (<see cref="TubeId.Home"/>): only that peer is asked. An id with an
/// unknown home (0: a client's arena carve) and a name are asked of each peer in turn.</item>
/// <item>Only for a workflow with a remote secret here (<see cref="TubeNodeOptions.RemoteSecrets"/>):
/// the fetch proves itself to the peer with that workflow's own secret, so a workflow reaches only its
/// own data on the peer, as any remote client of that workflow does. A workflow without one never leaves the node.</item>
/// <item>Bounded: at most <see cref="TubeNodeOptions.MaxPeerFetches"/> run at once (more wait for a
/// place), each within <see cref="TubeNodeOptions.PeerFetchTimeout"/>; Gets of the same data at the
/// same time share one fetch; a session of a peer's fetch never makes this node fetch in turn.</item>
/// <item>A fetched id is kept like data Put with no consumer count: until its TTL (the node's
/// <see cref="TubeNodeOptions.DefaultTtl"/>), a Delete, or eviction under pressure; a fetched name is a
/// cacheable version of the same name here.</item>
/// </list>
/// A failed fetch is the asker's <see cref="TubeError.NotFound"/>, with the reason: the peer is not
/// this node, and its trouble is not this node's unavailability.
/// </summary>
internal sealed partial class PeerFetcher : IAsyncDisposable
{
    private readonly TubeNode _node;
    private readonly TubeNodeOptions _settings;
    private readonly IPeerTransport _transport;
    private readonly SemaphoreSlim _places;
    private readonly ConcurrentDictionary<(string Workflow, string What), Share> _running = new();
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _perWorkflow = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private long _requests;
    private long _fetched;
    private long _failed;

    /// <param name="node">The node the fetched data goes to.</param>
    /// <param name="transport">Where the fetches run.</param>
    /// <param name="settings">The peers and limits: the node's own (a test gives others).</param>
    public PeerFetcher(TubeNode node, IPeerTransport transport, TubeNodeOptions? settings = null)
    {
        _node = node;
        _settings = settings ?? node.Settings;
        _transport = transport;
        _places = new SemaphoreSlim(_settings.MaxPeerFetches, _settings.MaxPeerFetches);
    }

    /// <summary>Fetches that brought data here.</summary>
    public long Fetched => Interlocked.Read(ref _fetched);

    /// <summary>Fetches that failed (no peer had it, or none could be asked).</summary>
    public long Failed => Interlocked.Read(ref _failed);


    /// <summary>Whether a Get of <paramref name="workflow"/> by a session of <paramref name="function"/> may fetch from peers.</summary>
    public bool Serves(string workflow, string function) =>
        function != PeerFetch.Function && _settings.RemoteSecrets?.ContainsKey(workflow) == true;

    /// <summary>
    /// Fetches <paramref name="id"/> from its home peer (or each peer, when its home is unknown) and
    /// registers it here under the same id; null when no peer may be asked. Waits for a fetch of the
    /// same id already running.
    /// </summary>
    /// <exception cref="TubeException"><see cref="TubeError.NotFound"/>: no peer has it, or asking failed (the message says why).</exception>
    /// <param name="workflow">The asking session's workflow.</param>
    /// <param name="id">The id.</param>
    /// <param name="wait">How long the home node may wait for it to be published (the Get's own wait).</param>
    /// <param name="cancellationToken">The asking session's end (the fetch goes on for others).</param>
    public async Task<DataEntry?> FetchAsync(string workflow, TubeId id, TimeSpan wait, CancellationToken cancellationToken)
    {
        var peers = PeersFor(id);
        if (peers.Count == 0)
        {
            return null;
        }

        var fetched = await ShareAsync(workflow, id.ToString(), peers, address => new PeerFetch(NextRequest(), address, workflow, id, null, null, (int)wait.TotalMilliseconds), cancellationToken).ConfigureAwait(false);
        return fetched is null ? null : _node.Directory.TryFind(workflow, id);
    }

    /// <summary>Fetches the current version of a name from the first peer that has it (each asked in turn); false when no peer may be asked.</summary>
    /// <exception cref="TubeException"><see cref="TubeError.NotFound"/>: no peer has it, or asking failed.</exception>
    public async Task<bool> FetchNamedAsync(string workflow, string nameSpace, string name, CancellationToken cancellationToken)
    {
        var peers = _settings.PeerNodes;
        if (peers is null || peers.Count == 0)
        {
            return false;
        }

        var addresses = peers.OrderBy(p => p.Key).Select(p => p.Value).ToArray();
        var fetched = await ShareAsync(workflow, $"{nameSpace}\n{name}", addresses, address => new PeerFetch(NextRequest(), address, workflow, null, nameSpace, name), cancellationToken).ConfigureAwait(false);
        return fetched is not null;
    }

    /// <summary>The peers to ask for <paramref name="id"/>: its home only, or every peer when its home is unknown; none when the home is this node or no peer of it.</summary>
    private IReadOnlyList<string> PeersFor(TubeId id)
    {
        var peers = _settings.PeerNodes;
        if (peers is null || id.Home == _settings.NodeNumber && id.Home != 0)
        {
            return [];
        }

        return id.Home == 0
            ? [.. peers.OrderBy(p => p.Key).Select(p => p.Value)]
            : peers.TryGetValue(id.Home, out var home) ? [home] : [];
    }

    private long NextRequest() => Interlocked.Increment(ref _requests);

    /// <summary>One fetch that Gets of the same data share; it is cancelled when its last Get has gone.</summary>
    private sealed class Share
    {
        public TaskCompletionSource<PeerFetched?> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public CancellationTokenSource Abandoned { get; } = new();

        /// <summary>Gets waiting for it (under the share's lock); -1 once abandoned.</summary>
        public int Waiters { get; set; }
    }

    /// <summary>
    /// One fetch per (workflow, what) at a time: a Get that comes while it runs waits for the same one
    /// (with its own cancellation, and the first Get's wait). When every Get waiting for it has gone
    /// (their sessions ended), the fetch is cancelled: nobody holds a place for nothing.
    /// </summary>
    private async Task<PeerFetched?> ShareAsync(string workflow, string what, IReadOnlyList<string> peers, Func<string, PeerFetch> ask, CancellationToken cancellationToken)
    {
        var key = (workflow, what);
        Share share;
        while (true)
        {
            var fresh = new Share();
            share = _running.GetOrAdd(key, fresh);
            lock (share)
            {
                if (share.Waiters >= 0)
                {
                    share.Waiters++;
                    if (share == fresh)
                    {
                        _ = RunAsync(key, share, peers, ask);
                    }

                    break;
                }
            }

            _running.TryRemove(new KeyValuePair<(string, string), Share>(key, share)); // abandoned: a new one
        }

        try
        {
            return await share.Done.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            lock (share)
            {
                if (--share.Waiters == 0 && !share.Done.Task.IsCompleted)
                {
                    share.Waiters = -1;
                    share.Abandoned.Cancel();
                }
            }
        }
    }

    private async Task RunAsync((string Workflow, string What) key, Share share, IReadOnlyList<string> peers, Func<string, PeerFetch> ask)
    {
        try
        {
            share.Done.TrySetResult(await AskEachAsync(key.Workflow, peers, ask, share.Abandoned.Token).ConfigureAwait(false));
        }
        catch (Exception e)
        {
            Interlocked.Increment(ref _failed);
            share.Done.TrySetException(e);
        }
        finally
        {
            _running.TryRemove(new KeyValuePair<(string, string), Share>(key, share));
            share.Abandoned.Dispose();
        }
    }

    /// <summary>Places one workflow may hold at once: half of <see cref="TubeNodeOptions.MaxPeerFetches"/> (at least one), so no tenant takes them all.</summary>
    private SemaphoreSlim PlacesOf(string workflow) =>
        _perWorkflow.GetOrAdd(workflow, _ => new SemaphoreSlim(Math.Max(1, _settings.MaxPeerFetches / 2)));

    /// <summary>Each peer in turn until one has it; a peer that does not answer, or refuses, is noted and the next asked.</summary>
    private async Task<PeerFetched?> AskEachAsync(string workflow, IReadOnlyList<string> peers, Func<string, PeerFetch> ask, CancellationToken abandoned)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token, abandoned);
        deadline.CancelAfter(_settings.PeerFetchTimeout);
        var own = PlacesOf(workflow);
        bool ownTaken = false;
        try
        {
            await own.WaitAsync(deadline.Token).ConfigureAwait(false);
            ownTaken = true;
            await _places.WaitAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            if (ownTaken)
            {
                own.Release();
            }

            throw new TubeException(TubeError.NotFound, _stop.IsCancellationRequested
                ? "Not on this node, and the node stops: no fetch from its peers starts."
                : $"Not on this node, and no fetch from its peers could start within {_settings.PeerFetchTimeout.TotalSeconds:0.###} s (the node runs {_settings.MaxPeerFetches} at once, a workflow half of them).");
        }

        var reasons = new List<string>();
        PeerFetch? last = null;
        try
        {
            foreach (var address in peers)
            {
                var fetch = ask(address);
                last = fetch;
                try
                {
                    var fetched = await _transport.FetchAsync(fetch, deadline.Token).ConfigureAwait(false);
                    if (fetch.Id is { } id)
                    {
                        Adopt(workflow, fetched, id);
                    }

                    Interlocked.Increment(ref _fetched);
                    _node.RecordIo(TubePath.NodeFetch, transmit: false, fetched.Length); // the admin status's node_fetch path, and faastube.node.io
                    LogFetched(_node.Logger, fetch.ToString(), fetched.Length);
                    return fetched;
                }
                catch (TubeException e) when (e.Error == TubeError.NotFound)
                {
                    reasons.Add($"{address}: not there");
                }
                catch (OperationCanceledException) when (deadline.IsCancellationRequested)
                {
                    reasons.Add($"{address}: no answer within {_settings.PeerFetchTimeout.TotalSeconds:0.###} s");
                    break;
                }
                catch (Exception e) when (e is FaaSTubeException or IOException or InvalidDataException or PlatformNotSupportedException)
                {
                    reasons.Add($"{address}: {e.Message}");
                    LogFailed(_node.Logger, fetch.ToString(), e.Message);
                }
            }
        }
        finally
        {
            _places.Release();
            own.Release();
        }

        throw new TubeException(TubeError.NotFound, $"Not on this node, and not fetched from its peers ({last?.ToString() ?? workflow}): {string.Join("; ", reasons).TrimEnd('.')}.");
    }

    /// <summary>
    /// The fetched Put becomes <paramref name="wanted"/>: a committed entry on
    /// the same block (the directory's lease taken for it first), kept until its TTL; the Put's own entry goes.
    /// </summary>
    private void Adopt(string workflow, PeerFetched fetched, TubeId wanted)
    {
        var local = fetched.Local;
        var source = _node.Directory.TryFind(workflow, local);
        if (source is null || !IsFetchedCopy(source, fetched.Length))
        {
            throw new InvalidDataException($"the answer named {local}, which is no fetched copy of {fetched.Length} bytes of this workflow (gone, or not the fetch's)"); // the reason for this peer; the asker's Get is NotFound
        }

        var entry = new DataEntry(wanted, workflow, source.Device, source.Block, 0)
        {
            Committed = true,
            RemainingConsumers = -1,
            ExpiresAt = _node.Now + _node.Settings.DefaultTtl,
        };
        lock (source.Sync)
        {
            if (source.Removed)
            {
                throw new InvalidDataException($"the copy fetched as {local} was removed before it was kept as {wanted}");
            }

            source.Block.AddLease(DataEntry.DirectoryHolder);
        }

        if (!_node.Directory.TryRegister(entry))
        {
            source.Block.Pool.Release(source.Block, DataEntry.DirectoryHolder); // it is here already (another way): that one stays
        }

        entry.Settled.TrySetResult();
        _node.Directory.Remove(source);
    }

    /// <summary>
    /// Whether <paramref name="entry"/> is what a fetch puts here: committed, Put by a fetch's session
    /// (its block's function), of the length the answer gave. Whatever id the network gateway names,
    /// nothing else of the workflow is adopted or dropped.
    /// </summary>
    internal static bool IsFetchedCopy(DataEntry? entry, long length) =>
        entry is { Committed: true, IsAllocation: false } && entry.Block.Function == PeerFetch.Function && entry.Length == length;

    /// <summary>The node stops: fetches running end (their Gets fail), none start; kept links close.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _transport.DisposeAsync().ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Fetched {What}: {Bytes} bytes")]
    private static partial void LogFetched(ILogger logger, string what, long bytes);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Fetching {What} failed: {Reason}")]
    private static partial void LogFailed(ILogger logger, string what, string reason);
}
