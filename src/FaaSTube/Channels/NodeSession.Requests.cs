using System.Diagnostics;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Devices;
using FaaSTube.Diagnostics;
using FaaSTube.Memory;
using FaaSTube.Transfers;

namespace FaaSTube.Channels;

/// <summary>
/// The requests of a session. Every request is parsed and validated completely before it touches
/// any state; every descriptor sent back is made from the pool's tables (nothing a client sends is
/// trusted); every copy holds its own use of the block it copies and runs while the session's window
/// is guaranteed mapped (the session's end waits for it).
/// </summary>
internal sealed partial class NodeSession
{
    private readonly bool _inProcess;
    private readonly Lock _sync = new();
    private readonly Dictionary<TubeId, Stack<(PoolBlock Block, BlockUse Use)>> _held = [];
    private readonly HashSet<(int Device, int Slab, int Generation)> _opened = [];
    private readonly SemaphoreSlim _allocating = new(1, 1);
    private int _running;
    private int _heldCount;
    private int _unfinishedPuts;

    /// <summary>
    /// A request as the socket or the control ring carries it: its trace context, then the request,
    /// decoded (malformed, the trace context included: BadRequest), then executed in a span linked to
    /// the client's (or continuing it, with <see cref="TubeNodeOptions.ContinueClientTraces"/>). Nothing
    /// but the frame's context is the span's parent or link: a client's sampled flag never decides
    /// what the node records unless the node trusts its clients' traces.
    /// </summary>
    public Task<(IMessage Reply, string Path)> ExecuteFrameAsync(FrameType type, ReadOnlySpan<byte> payload)
    {
        TraceContext trace;
        IRequest request;
        try
        {
            (trace, request) = Requests.DecodeTraced(type, payload);
        }
        catch (Exception e)
        {
            return Task.FromException<(IMessage, string)>(Describe(type, e));
        }

        Activity.Current = null; // what the node's thread happened to run under is no parent of a client's request
        var client = trace.ToParent();
        return _node.Settings.ContinueClientTraces || client == default
            ? ExecuteAsync(request, client)
            : ExecuteAsync(request, default, new ActivityLink(client));
    }

    /// <summary>A request as raw bytes without a trace context (in-process raw calls): decoded (malformed: BadRequest), then executed under <paramref name="parent"/>.</summary>
    public Task<(IMessage Reply, string Path)> ExecuteAsync(FrameType type, ReadOnlySpan<byte> payload, ActivityContext parent)
    {
        IRequest request;
        try
        {
            request = Requests.Decode(type, payload);
        }
        catch (Exception e)
        {
            return Task.FromException<(IMessage, string)>(Describe(type, e));
        }

        return ExecuteAsync(request, parent);
    }

    /// <summary>
    /// What a remote client may ask (an allow-list: a request added to the protocol later is refused
    /// remotely until it is listed here): host data only, since device memory cannot be mapped across
    /// machines. Allocate, Publish, arena ranges, NamedAllocate, slab closes and Gets to a GPU are not.
    /// </summary>
    private static bool RemoteMay(IRequest request) => request is
        PutBegin or PutPart or PutCommit or PutWhole or GetToHost or Get { Device: < 0 } or GetWhole or Release or Where or Delete or Sync
        or NamedPutBegin or NamedCommit or NamedGet { Device: < 0 } or NamedWhere or NamedDelete or NamedLoadFailed;

    /// <summary>
    /// Runs one request (the caller holds a slot) and returns its answer and the data path it took,
    /// in a server span (<c>faastube.{operation}</c>) whose parent is <paramref name="parent"/> (the
    /// client's span; default: <see cref="Activity.Current"/>).
    /// Failures come out as <see cref="TubeException"/> with the code and message the client gets
    /// (internal ones logged with a reference, never their details); <see cref="OperationCanceledException"/>
    /// once the session ended under it. One-way requests (Publish, Release) and every request's checks
    /// run synchronously, before the caller reads the next request: the connection's order is kept.
    /// </summary>
    public async Task<(IMessage Reply, string Path)> ExecuteAsync(IRequest request, ActivityContext parent = default, ActivityLink? link = null)
    {
        var type = request.Type;
        var metrics = _node.Metrics;
        var operation = new KeyValuePair<string, object?>(TelemetryTags.Operation, RequestNames.Of(type));
        var started = Stopwatch.GetTimestamp();
        string path = "control";
        string? error = null;
        metrics.ActiveRequests.Add(1, operation);
        using var activity = link is { } l
            ? Telemetry.ActivitySource.StartActivity(RequestNames.SpanOf(type), ActivityKind.Server, parent, links: [l])
            : Telemetry.ActivitySource.StartActivity(RequestNames.SpanOf(type), ActivityKind.Server, parent);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag(TelemetryTags.Operation, RequestNames.Of(type));
            activity.SetTag(TelemetryTags.Workflow, _workflow);
            activity.SetTag(TelemetryTags.SessionId, Id);
            if (DataIdOf(request) is { } data)
            {
                activity.SetTag(TelemetryTags.DataId, data.ToString());
            }
        }

        int running = Interlocked.Increment(ref _running);
        try
        {
            _node.RecordRunning(running);
            if (IsRemote && !RemoteMay(request))
            {
                throw new TubeException(TubeError.BadRequest, $"{type}: a remote client reaches host data only (Put, Get to host memory, Where, Release, Delete, named Put, Where and Delete).");
            }

            IMessage reply;
            (reply, path) = request switch
            {
                PutBegin r => (await PutBeginAsync(r).ConfigureAwait(false), TubePath.HostStaged.Tag()),
                PutPart r => (await PutPartAsync(r).ConfigureAwait(false), TubePath.HostStaged.Tag()),
                PutCommit r => (Commit(r), TubePath.HostStaged.Tag()),
                PutWhole r => (await PutWholeAsync(r).ConfigureAwait(false), TubePath.HostStaged.Tag()),
                Allocate r => (await AllocateAsync(r).ConfigureAwait(false), TubePath.ZeroCopy.Tag()),
                Publish r => (Commit(r), TubePath.ZeroCopy.Tag()),
                Get r => await GetAsync(r).ConfigureAwait(false),
                GetToHost r => (await GetToHostAsync(r).ConfigureAwait(false), TubePath.HostStaged.Tag()),
                GetWhole r => await GetWholeAsync(r).ConfigureAwait(false),
                Release r => (ReleaseHeld(r), "control"),
                Where r => (Locate(r), "control"),
                SlabClosed r => (ForgetSlab(r), "control"),
                Delete r => (Remove(r), "control"),
                Sync => (default(Empty), "control"),
                NamedPutBegin r => (await NamedPutBeginAsync(r).ConfigureAwait(false), TubePath.HostStaged.Tag()),
                NamedCommit r => (CommitNamed(r), TubePath.HostStaged.Tag()),
                NamedGet r => await NamedGetAsync(r).ConfigureAwait(false),
                NamedWhere r => (LocateNamed(r), "control"),
                NamedLoadFailed r => (FailLoad(r), "control"),
                NamedDelete r => (RemoveNamed(r), "control"),
                NamedAllocate r => (await NamedAllocateAsync(r).ConfigureAwait(false), TubePath.ZeroCopy.Tag()),
                ArenaLease r => (await LeaseRangeAsync(r).ConfigureAwait(false), TubePath.ZeroCopy.Tag()),
                ArenaCarve r => (await CarveAsync(r).ConfigureAwait(false), TubePath.ZeroCopy.Tag()),
                ArenaReturn r => (ReturnRange(r), "control"),
                _ => throw Requests.UnknownType(type),
            };
            activity?.SetTag(TelemetryTags.Path, path);
            return (reply, path);
        }
        catch (OperationCanceledException e) when (_ended.IsCancellationRequested)
        {
            error = Spans.ErrorType(e);
            Spans.Fail(activity, e, "The session ended under the request.");
            throw; // nobody is there to answer
        }
        catch (Exception e)
        {
            var refused = Describe(type, e);
            error = Spans.ErrorType(refused);
            Spans.Fail(activity, refused);
            throw refused;
        }
        finally
        {
            Interlocked.Decrement(ref _running);
            metrics.ActiveRequests.Add(-1, operation);
            var tags = new TagList { operation, { TelemetryTags.Path, path } };
            if (error is not null)
            {
                tags.Add(TelemetryTags.ErrorType, error);
            }

            metrics.RequestDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, tags);
        }
    }

    /// <summary>The data a request names, for its span.</summary>
    private static TubeId? DataIdOf(IRequest request) => request switch
    {
        PutPart r => r.Id,
        PutCommit r => r.Id,
        Publish r => r.Id,
        Get r => r.Id,
        GetToHost r => r.Id,
        GetWhole r => r.Id,
        Release r => r.Id,
        Where r => r.Id,
        Delete r => r.Id,
        NamedCommit r => r.Id,
        ArenaCarve r => r.Id,
        _ => null,
    };

    /// <summary>What a client is told about a failure: a code and a message, never a stack trace; internal failures logged with a reference.</summary>
    private TubeException Describe(FrameType type, Exception e)
    {
        var (error, message) = e switch
        {
            TubeException t => (t.Error, t.Reason),
            PoolException { Error: PoolError.OutOfMemory } p => (TubeError.OutOfMemory, _node.OutOfMemory(type.ToString(), Id, p)),
            PoolException { Error: PoolError.TooLarge } p => (TubeError.TooLarge, p.Message),
            PoolException { Error: PoolError.QuotaExceeded } p => (TubeError.OutOfMemory, p.Message), // names only the asker's own workflow
            PoolException p => (TubeError.BadRequest, p.Message),
            InvalidDataException or ArgumentException or FormatException => (TubeError.BadRequest, e.Message),
            _ => (TubeError.Internal, _node.InternalError(type.ToString(), Id, e)),
        };
        return e as TubeException ?? new TubeException(error, message);
    }

    private NodeDevice DeviceAt(int ordinal) =>
        (uint)ordinal < (uint)_node.Devices.Length ? _node.Devices[ordinal] : throw new TubeException(TubeError.BadRequest, $"There is no GPU {ordinal}.");

    /// <summary>A part [offset, +length) of data of <paramref name="dataLength"/> bytes, at <paramref name="windowOffset"/> of the window.</summary>
    private static void CheckPart(long offset, int length, long dataLength, int windowOffset, int windowLength)
    {
        if (length <= 0 || offset < 0 || offset > dataLength - length || windowOffset < 0 || windowOffset > windowLength - length)
        {
            throw new TubeException(TubeError.BadRequest, $"Part [{offset}, +{length}) at window offset {windowOffset} is out of range.");
        }
    }

    private NodeWindow Window => _window ?? throw new TubeException(TubeError.BadRequest, "The session has no window.");

    private async Task<PutBeginOk> PutBeginAsync(PutBegin request)
    {
        var entry = await NewEntryAsync(request.Length, request.Device).ConfigureAwait(false);
        Interlocked.Increment(ref _unfinishedPuts); // until committed or dropped
        return new PutBeginOk(entry.Id);
    }

    /// <summary>Put and Allocate: a block of this workflow on the asked GPU, leased to this client, in the directory but not yet visible.</summary>
    private async Task<DataEntry> NewEntryAsync(long length, int ordinal)
    {
        var device = DeviceAt(ordinal);
        if (length <= 0)
        {
            throw new TubeException(TubeError.BadRequest, $"{length} bytes asked for.");
        }

        CheckRoomToHold();

        var options = new BlockOptions { Function = _function, Holder = Holder, Partition = _workflow };
        var block = await AllocateInTurnAsync(device.Pool, length, options).ConfigureAwait(false);
        return _node.Directory.Register(new DataEntry(TubeId.NewId(_node.Settings.NodeNumber), _workflow, device.Device.Ordinal, block, Id));
    }

    /// <summary>
    /// One allocation of this session at a time: when memory is short, each session has at most one
    /// request queued at the pool (whose slow path is one queue for everybody), so a client that
    /// floods allocations delays only itself. Waiting behind its own earlier allocations counts
    /// against the pool's allocation timeout.
    /// </summary>
    private Task<PoolBlock> AllocateInTurnAsync(GpuMemoryPool pool, long length, BlockOptions options) =>
        InTurnAsync(ended => pool.AllocateAsync(length, options, ended));

    /// <summary>One pool allocation of this session at a time (see <see cref="AllocateInTurnAsync"/>): an allocation, or an arena range's lease.</summary>
    private async Task<PoolBlock> InTurnAsync(Func<CancellationToken, ValueTask<PoolBlock>> allocate)
    {
        var patience = _node.Settings.Pool.AllocationTimeout;
        if (!await _allocating.WaitAsync(patience > TimeSpan.Zero ? patience : Timeout.InfiniteTimeSpan, _ended.Token).ConfigureAwait(false))
        {
            throw new TubeException(TubeError.OutOfMemory, $"This client's earlier allocations still wait for memory after {patience.TotalSeconds:0.###} s.");
        }

        try
        {
            return await allocate(_ended.Token).ConfigureAwait(false);
        }
        finally
        {
            _allocating.Release();
        }
    }

    /// <summary>DMA of one part from the client's pinned window into the block, under the device's transfer scheduler.</summary>
    private async Task<Empty> PutPartAsync(PutPart request)
    {
        var (id, offset, windowOffset, length, _, sloTicks) = request; // the tenant: see below
        var window = Window;
        var entry = NamedPutOf(id) ?? _node.Directory.Find(_workflow, id, Id);
        if (entry.Committed || entry.OwnerSession != Id)
        {
            throw new TubeException(TubeError.AccessDenied, $"{id} is not an unfinished Put of this client.");
        }

        CheckPart(offset, length, entry.Length, windowOffset, window.Length);
        CheckSlo(sloTicks);

        using var use = await entry.Block.UseAsync(_ended.Token).ConfigureAwait(false);
        // The request's tenant is ignored: the scheduler's tenant is the session's workflow (a client cannot join or split another's fair share).
        var transfer = new TransferRequest { Tenant = _workflow, Slo = sloTicks > 0 ? TimeSpan.FromTicks(sloTicks) : null };
        await _node.Devices[entry.Device].Engine.ToDeviceAsync(window.Memory.Slice(windowOffset, length), use.Memory.Slice(offset, length), transfer, _ended.Token).ConfigureAwait(false);
        _node.RecordIo(TubePath.HostStaged, transmit: false, length);
        return default;
    }

    /// <summary>
    /// PutBegin, one PutPart of the whole window range and PutCommit, in one request (no round trip
    /// between them): the same checks as theirs, the range, SLO, consumers and TTL before anything is
    /// allocated; a Put that fails after its begin is dropped at once.
    /// </summary>
    private async Task<PutBeginOk> PutWholeAsync(PutWhole request)
    {
        var (length, device, windowOffset, sloTicks, consumers, ttlTicks, keepUntilDeleted) = request;
        CheckPart(0, length, length, windowOffset, Window.Length);
        CheckSlo(sloTicks);
        CheckCommit(consumers, ttlTicks, keepUntilDeleted); // before the block: a refused one costs the node no allocation and no copy
        var begun = await PutBeginAsync(new PutBegin(length, device)).ConfigureAwait(false);
        try
        {
            await PutPartAsync(new PutPart(begun.Id, 0, windowOffset, length, "", sloTicks)).ConfigureAwait(false);
            Commit(new PutCommit(begun.Id, consumers, ttlTicks, keepUntilDeleted));
            return begun;
        }
        catch
        {
            if (_node.Directory.TryFind(_workflow, begun.Id) is { Committed: false } unfinished && unfinished.OwnerSession == Id)
            {
                DropUnfinished(unfinished);
            }

            throw;
        }
    }

    private async Task<AllocateOk> AllocateAsync(Allocate request)
    {
        var entry = await NewEntryAsync(request.Length, request.Device).ConfigureAwait(false);
        entry.IsAllocation = true;
        var use = await entry.Block.UseAsync(_ended.Token).ConfigureAwait(false);
        lock (_sync)
        {
            Held(entry.Id).Push((entry.Block, use));
        }

        return new AllocateOk(entry.Id, Map(entry.Device, use));
    }

    /// <summary>PutCommit / Publish: the data becomes visible to the workflow; the producer's own lease and use go.</summary>
    private Empty Commit(PutCommit request) => Commit(request.Id, request.Consumers, request.TtlTicks, request.KeepUntilDeleted, isPublish: false);

    /// <summary>
    /// A Publish goes one way and the client has given its buffer up when it sends one: a refused
    /// Publish of the client's own allocation drops the allocation, so nothing is left that only the
    /// connection's end would free.
    /// </summary>
    private Empty Commit(Publish request)
    {
        try
        {
            return Commit(request.Id, request.Consumers, request.TtlTicks, request.KeepUntilDeleted, isPublish: true);
        }
        catch (TubeException)
        {
            if (_node.Directory.TryFind(_workflow, request.Id) is { Committed: false, IsAllocation: true } own && own.OwnerSession == Id)
            {
                DropUnfinished(own);
            }

            throw;
        }
    }

    /// <summary>Drops the client's own unfinished Put or Allocate: its use and lease, its entry, and (for a Put) its count.</summary>
    private void DropUnfinished(DataEntry own)
    {
        if (own.IsAllocation)
        {
            DropHeld(own.Id); // an Allocate's use and lease; a Put holds only the lease the directory gives back
        }

        if (_node.Directory.Remove(own) && !own.IsAllocation)
        {
            Interlocked.Decrement(ref _unfinishedPuts);
        }
    }

    /// <summary>A part's SLO: 0 (none) up to <see cref="TubeNodeOptions.MaxTtl"/>.</summary>
    private void CheckSlo(long sloTicks)
    {
        if (sloTicks < 0 || sloTicks > _node.Settings.MaxTtl.Ticks)
        {
            throw new TubeException(TubeError.BadRequest, $"An SLO of {sloTicks} ticks: it must be 0 (none) up to {_node.Settings.MaxTtl}.");
        }
    }

    /// <summary>A commit's consumers and TTL.</summary>
    private void CheckCommit(int consumers, long ttlTicks, bool keepUntilDeleted)
    {
        if (!keepUntilDeleted && consumers < 1)
        {
            throw new TubeException(TubeError.BadRequest, "Data needs at least one consumer (or KeepUntilDeleted).");
        }

        var maxTtl = _node.Settings.MaxTtl;
        if (ttlTicks < 0 || ttlTicks > maxTtl.Ticks)
        {
            throw new TubeException(TubeError.BadRequest, $"A TTL of {ttlTicks} ticks: it must be 0 (the default) up to {maxTtl}.");
        }
    }

    private Empty Commit(TubeId id, int consumers, long ttlTicks, bool keepUntilDeleted, bool isPublish)
    {
        CheckCommit(consumers, ttlTicks, keepUntilDeleted);
        var expiresAt = _node.Now + (ttlTicks > 0 ? TimeSpan.FromTicks(ttlTicks) : _node.Settings.DefaultTtl);
        var entry = _node.Directory.Find(_workflow, id, Id);
        lock (entry.Sync)
        {
            if (entry.Committed || entry.OwnerSession != Id || entry.Removed)
            {
                throw new TubeException(TubeError.AccessDenied, $"{id} is not an unfinished Put or Allocate of this client.");
            }

            if (entry.IsAllocation != isPublish)
            {
                throw new TubeException(TubeError.BadRequest, isPublish ? $"{id} is a Put: PutCommit makes it visible." : $"{id} is an allocation: Publish makes it visible.");
            }

            entry.Block.AddLease(DataEntry.DirectoryHolder);
            if (keepUntilDeleted)
            {
                entry.Block.Pool.ExemptFromEviction(entry.Block);
            }

            entry.KeepUntilDeleted = keepUntilDeleted;
            entry.RemainingConsumers = keepUntilDeleted ? -1 : consumers;
            entry.ExpiresAt = keepUntilDeleted ? null : expiresAt;
            entry.Committed = true;
            entry.OwnerSession = 0;
        }

        entry.Settled.TrySetResult(); // Gets waiting for it go on

        if (isPublish)
        {
            DropHeld(id); // the producer's use and lease
        }
        else
        {
            entry.Block.Pool.Release(entry.Block, Holder);
            Interlocked.Decrement(ref _unfinishedPuts);
        }

        return default;
    }

    /// <summary>
    /// A lease and an open use for this client; device -1 is a host read (GetToHost parts follow).
    /// Data allocated but not yet published is waited for (bounded by the request and the node's
    /// <see cref="TubeNodeOptions.MaxPublishWait"/>), so a consumer can ask before its producer is done.
    /// </summary>
    private async Task<(IMessage, string)> GetAsync(Get request, bool fetch = true)
    {
        var (id, device, waitMilliseconds) = request;
        if (waitMilliseconds < 0)
        {
            throw new TubeException(TubeError.BadRequest, $"A wait of {waitMilliseconds} ms.");
        }

        var wait = TimeSpan.FromMilliseconds(waitMilliseconds);
        wait = wait < _node.Settings.MaxPublishWait ? wait : _node.Settings.MaxPublishWait;
        var found = _node.Directory.TryFind(_workflow, id);
        if (found is null && wait > TimeSpan.Zero && _node.CarvePending(_workflow, id) is { } producer)
        {
            // An arena id whose carve the producer's connection has not delivered yet: wait for it (bounded), then as any allocation.
            await WaitOutsideSlotAsync(async () =>
            {
                await producer.WaitForCarveAsync(id.ArenaParts.Sequence, wait, _ended.Token).ConfigureAwait(false);
                return 0;
            }).ConfigureAwait(false);
            found = _node.Directory.TryFind(_workflow, id);
        }

        bool fetched = false;
        if (found is null && fetch && _node.PeerFetches is { } peers && peers.Serves(_workflow, _function))
        {
            // Not here: its home node (or, home unknown, each peer) is asked, and the copy kept here (src/FaaSTube/Channels/Peers).
            found = await WaitOutsideSlotAsync(() => peers.FetchAsync(_workflow, id, wait, _ended.Token)).ConfigureAwait(false);
            fetched = found is not null;
        }

        var entry = found is { Committed: false, Removed: false } && wait > TimeSpan.Zero
            ? await WaitForPublishAsync(id, wait).ConfigureAwait(false)
            : _node.Directory.Find(_workflow, id);
        CheckRoomToHold();
        var leased = await LeaseAsync(entry, device, () => _node.Directory.TryFind(_workflow, id) == entry).ConfigureAwait(false)
            ?? throw new TubeException(TubeError.NotFound, $"No data {id} in workflow '{_workflow}'.");
        var path = fetched ? TubePath.NodeFetch : leased.Path;
        return (new GetOk(leased.Length, path, leased.Mapping), path.Tag());
    }

    /// <summary>
    /// A lease and an open use for this client on <paramref name="entry"/>'s block on <paramref name="device"/>
    /// (-1: the primary, for a host read), made there by a peer copy first if need be; null when
    /// <paramref name="current"/> (asked under the entry's lock) says the entry is no longer the one asked for.
    /// </summary>
    private async Task<(long Length, TubePath Path, Mapping? Mapping)?> LeaseAsync(DataEntry entry, int device, Func<bool> current)
    {
        var id = entry.Id;
        PoolBlock block;
        TubePath path;
        PoolBlock? kept;
        lock (entry.Sync)
        {
            kept = device < 0 ? null : entry.On(device);
        }

        if (device < 0 || kept is not null)
        {
            block = kept ?? entry.Block;
            path = device < 0 ? TubePath.HostStaged : TubePath.ZeroCopy; // a replica made earlier is read in place too
        }
        else
        {
            block = await ReplicaAsync(entry, DeviceAt(device)).ConfigureAwait(false);
            path = TubePath.PeerCopy;
        }

        lock (entry.Sync)
        {
            if (entry.Removed || !current())
            {
                return null;
            }

            block.AddLease(Holder);
        }

        bool wasResident = block.IsResident;
        BlockUse use;
        try
        {
            use = await block.UseAsync(_ended.Token).ConfigureAwait(false);
        }
        catch
        {
            block.Pool.Release(block, Holder);
            throw;
        }

        lock (_sync)
        {
            Held(id).Push((block, use));
        }

        path = wasResident || path == TubePath.HostStaged ? path : TubePath.Restored;
        _node.RecordIo(path, transmit: true, block.Length);
        return (block.Length, path, device < 0 ? null : Map(device, use));
    }

    /// <summary>
    /// Waits for the Publish of <paramref name="id"/> without holding a request slot (a connection's
    /// later requests, its own Publishes among them, are read meanwhile), in one of at most
    /// <see cref="TubeNodeOptions.MaxRequestsInFlight"/> wait slots (when all are taken, in its request
    /// slot); then takes a request slot again before going on. The session's end waits for the wait slots before the request slots
    /// (<see cref="EndAsync"/>), so a wait that ends then still finds a request slot to give back.
    /// </summary>
    private Task<DataEntry> WaitForPublishAsync(TubeId id, TimeSpan wait) =>
        WaitOutsideSlotAsync(() => _node.Directory.FindPublishedAsync(_workflow, id, wait, _ended.Token).AsTask());

    /// <summary>Runs <paramref name="wait"/> in a wait slot, not a request slot (see <see cref="WaitForPublishAsync"/>); in the request slot when every wait slot is taken.</summary>
    private async Task<T> WaitOutsideSlotAsync<T>(Func<Task<T>> wait)
    {
        if (!_waits.Wait(0))
        {
            // Every wait slot is taken: this request waits in its request slot (bounded by the slots, as before).
            return await wait().ConfigureAwait(false);
        }

        Exit();
        try
        {
            return await wait().ConfigureAwait(false);
        }
        finally
        {
            await _slots.WaitAsync(CancellationToken.None).ConfigureAwait(false); // the caller gives it back, as for any request
            _waits.Release();
        }
    }

    /// <summary>The copy of <paramref name="entry"/> on another GPU, made once over the routed peer paths and kept for later consumers there.</summary>
    private async Task<PoolBlock> ReplicaAsync(DataEntry entry, NodeDevice target)
    {
        int device = target.Device.Ordinal;
        lock (entry.Sync)
        {
            if (entry.On(device) is { } existing)
            {
                return existing;
            }
        }

        var options = new BlockOptions { Function = entry.Block.Function, Holder = DataEntry.DirectoryHolder, NeverEvict = entry.KeepUntilDeleted, Partition = entry.Workflow, CacheEntry = entry.Block.Cache is not null };
        var copy = await AllocateInTurnAsync(target.Pool, entry.Length, options).ConfigureAwait(false);
        try
        {
            using var from = await entry.Block.UseAsync(_ended.Token).ConfigureAwait(false);
            using var to = await copy.UseAsync(_ended.Token).ConfigureAwait(false);
            await _node.Copier.CopyAsync(from.Memory, to.Memory, _ended.Token).ConfigureAwait(false);
        }
        catch
        {
            copy.Pool.Release(copy, DataEntry.DirectoryHolder);
            throw;
        }

        lock (entry.Sync)
        {
            if (entry.Removed)
            {
                copy.Pool.Release(copy, DataEntry.DirectoryHolder); // deleted or consumed during the copy: nobody would ever release it
                throw new TubeException(TubeError.NotFound, $"No data {entry.Id} in workflow '{_workflow}'.");
            }

            if (entry.On(device) is { } raced)
            {
                copy.Pool.Release(copy, DataEntry.DirectoryHolder);
                return raced;
            }

            if (entry.Block.Cache is { } cached)
            {
                copy.Cache = cached.ForReplica(entry.Length, target.Device.HostLinkBytesPerSecond); // a cached object's replica is cached too
                copy.Cache.Drop = () => Names.CacheDrops.Replica(entry, device, copy);
            }

            entry.Replicas[device] = copy;
            return copy;
        }
    }

    /// <summary>One part of a held block to the window. The copy holds a use of its own: a Release racing it cannot free the block under it.</summary>
    private async Task<Empty> GetToHostAsync(GetToHost request)
    {
        var (id, offset, windowOffset, length) = request;
        var window = Window;
        PoolBlock block;
        lock (_sync)
        {
            block = _held.TryGetValue(id, out var stack) && stack.Count > 0
                ? stack.Peek().Block
                : throw new TubeException(TubeError.NotLeased, $"Get {id} before reading it to the host.");
        }

        CheckPart(offset, length, block.Length, windowOffset, window.Length);

        using var use = await block.UseAsync(_ended.Token).ConfigureAwait(false); // Stale if a Release freed it first
        var transfer = new TransferRequest { Tenant = _workflow };
        await _node.Devices[block.Pool.Device.Ordinal].Engine.ToHostAsync(use.Memory.Slice(offset, length), window.Memory.Slice(windowOffset, length), transfer, _ended.Token).ConfigureAwait(false);
        return default;
    }

    /// <summary>
    /// Get to the host, one GetToHost part of the whole data and its Release, in one request when the
    /// data fits <see cref="GetWhole.MaxLength"/> (the range is checked before the Get); when it does
    /// not, the lease stays as after a Get. It reads data held on this node only: data of a peer node
    /// is NotFound here (a Get fetches it), so a slow peer never holds the client's window range. A copy that fails drops the lease without counting a
    /// consumer done: the data stays for another try.
    /// </summary>
    private async Task<(IMessage, string)> GetWholeAsync(GetWhole request)
    {
        var (id, windowOffset, maxLength, waitMilliseconds) = request;
        CheckPart(0, maxLength, maxLength, windowOffset, Window.Length);
        var (reply, path) = await GetAsync(new Get(id, -1, waitMilliseconds), fetch: false).ConfigureAwait(false); // data on this node only: a peer's is fetched by a Get
        var ok = (GetOk)reply;
        if (ok.Length > maxLength)
        {
            return (ok, path); // leased: parts follow
        }

        try
        {
            await GetToHostAsync(new GetToHost(id, 0, windowOffset, (int)ok.Length)).ConfigureAwait(false);
        }
        catch
        {
            DropHeld(id);
            throw;
        }

        ReleaseHeld(new Release(id));
        return (ok, path);
    }

    /// <summary>
    /// A consumer is done: its lease goes; when all consumers are, the data is freed at once. For the
    /// client's own unfinished Put or Allocate, Release drops it (a producer that gave up).
    /// </summary>
    private Empty ReleaseHeld(Release request)
    {
        var id = request.Id;
        if (DropNamedPut(id))
        {
            return default;
        }

        var entry = _node.Directory.TryFind(_workflow, id);
        if (entry is { Committed: false } abandoned && abandoned.OwnerSession == Id)
        {
            DropUnfinished(abandoned);
            return default;
        }

        if (!DropHeld(id))
        {
            throw new TubeException(TubeError.NotLeased, $"This client holds no lease on {id}.");
        }

        if (entry is { Committed: true })
        {
            bool last;
            lock (entry.Sync)
            {
                last = entry.RemainingConsumers > 0 && --entry.RemainingConsumers == 0;
            }

            if (last)
            {
                _node.Directory.Remove(entry);
            }
        }

        return default;
    }

    private WhereOk Locate(Where request) => new(_node.Directory.Find(_workflow, request.Id).Device);

    private Empty ForgetSlab(SlabClosed request)
    {
        var (device, slab, generation) = request;
        var pool = DeviceAt(device).Pool;
        lock (_sync)
        {
            if (!_opened.Remove((device, slab, generation)))
            {
                throw new TubeException(TubeError.BadRequest, $"This client has not opened slab {slab} generation {generation} of GPU {device}.");
            }
        }

        pool.CloseSlab(slab, generation, Holder);
        return default;
    }

    private Empty Remove(Delete request)
    {
        _node.Directory.Remove(_node.Directory.Find(_workflow, request.Id));
        return default;
    }

    /// <summary>
    /// The mapping of a use: device, slab id, generation, offset, length, and the slab's IPC
    /// handle the first time this client sees the slab. The slab holds this workflow's blocks only
    /// (the pool's partitions), so the whole slab a client maps is its own workflow's memory.
    /// </summary>
    private Mapping Map(int device, BlockUse use)
    {
        var d = use.Descriptor;
        var key = (device, d.SlabId, d.Generation);
        byte[] handle = [];
        if (!_inProcess)
        {
            // Always the handle (80 bytes): a client that has the slab mapped ignores it, and two replies
            // racing to a client that has not cannot leave one of them without a handle.
            handle = new byte[IpcMemoryHandle.Size];
            _node.Devices[device].Pool.OpenSlab(d.SlabId, d.Generation, Holder).WriteTo(handle); // idempotent for this importer
            lock (_sync)
            {
                _opened.Add(key);
            }
        }

        return new Mapping(device, d.SlabId, d.Generation, d.Offset, d.Length, handle);
    }

    /// <summary>The uses this client holds on <paramref name="id"/> (counted). Call under <see cref="_sync"/>.</summary>
    private Stack<(PoolBlock, BlockUse)> Held(TubeId id)
    {
        _heldCount++;
        return _held.TryGetValue(id, out var stack) ? stack : _held[id] = new Stack<(PoolBlock, BlockUse)>();
    }

    /// <summary>
    /// Refuses a request that would make this client hold more than <see cref="TubeNodeOptions.MaxHeldPerSession"/>
    /// leases and unfinished Puts: what one connection makes the node remember is bounded. Checked
    /// before anything is taken (requests running at once may pass it together: at most
    /// <see cref="TubeNodeOptions.MaxRequestsInFlight"/> over).
    /// </summary>
    private void CheckRoomToHold()
    {
        int held;
        lock (_sync)
        {
            held = _heldCount;
        }

        if (held + Volatile.Read(ref _unfinishedPuts) >= _node.Settings.MaxHeldPerSession)
        {
            throw new TubeException(TubeError.BadRequest, $"This client holds {_node.Settings.MaxHeldPerSession} leases and unfinished Puts, the most the node allows one connection; release some first.");
        }
    }

    /// <summary>Ends one use and lease this client holds on <paramref name="id"/>; false when it holds none.</summary>
    private bool DropHeld(TubeId id)
    {
        (PoolBlock Block, BlockUse Use) held;
        lock (_sync)
        {
            if (!_held.TryGetValue(id, out var stack) || stack.Count == 0)
            {
                return false;
            }

            held = stack.Pop();
            _heldCount--;
            if (stack.Count == 0)
            {
                _held.Remove(id);
            }
        }

        held.Use.Dispose();
        held.Block.Pool.Release(held.Block, Holder);
        return true;
    }
}
