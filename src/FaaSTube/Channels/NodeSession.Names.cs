using FaaSTube.Channels.Names;
using FaaSTube.Channels.Peers;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Memory;

namespace FaaSTube.Channels;

/// <summary>
/// The named requests of a session (src/FaaSTube/Channels/Names): a named Put goes into its scope's
/// partition and is this session's until committed (kept here, not in the id directory, so no id
/// request reaches it); a named Get leases the current version as a Get does an id's, waits for a load
/// in progress outside the request slots, or makes this session the loader.
/// </summary>
internal sealed partial class NodeSession
{
    /// <summary>The unfinished named Puts and allocations of this session, with the load each belongs to if its loader began it (under <see cref="_sync"/>).</summary>
    private readonly Dictionary<TubeId, (DataEntry Entry, NameKey Key, PendingLoad? Load, long Began)> _namedPuts = [];

    private NameKey NameOf(string ns, string name) => _node.Names.Resolve(_workflow, ns, name);

    /// <summary>This session's unfinished named Put <paramref name="id"/>, if it is one.</summary>
    private DataEntry? NamedPutOf(TubeId id)
    {
        lock (_sync)
        {
            return _namedPuts.TryGetValue(id, out var put) ? put.Entry : null;
        }
    }

    /// <summary>Drops this session's unfinished named Put or allocation <paramref name="id"/> (Release); false if it is none.</summary>
    private bool DropNamedPut(TubeId id)
    {
        DataEntry entry;
        lock (_sync)
        {
            if (!_namedPuts.Remove(id, out var put))
            {
                return false;
            }

            entry = put.Entry;
        }

        Interlocked.Decrement(ref _unfinishedPuts);
        if (!entry.IsAllocation || !DropHeld(id))
        {
            entry.Block.Pool.Release(entry.Block, Holder);
        }

        return true;
    }

    private async Task<PutBeginOk> NamedPutBeginAsync(NamedPutBegin request) =>
        new((await BeginNamedAsync(request.Namespace, request.Name, request.Length, request.Device).ConfigureAwait(false)).Id);

    /// <summary>A named object the client writes on the GPU (its loader's kernel or device copy): a named Put's block, mapped as an Allocate's.</summary>
    private async Task<AllocateOk> NamedAllocateAsync(NamedAllocate request)
    {
        var entry = await BeginNamedAsync(request.Namespace, request.Name, request.Length, request.Device, allocation: true).ConfigureAwait(false);
        BlockUse use;
        try
        {
            use = await entry.Block.UseAsync(_ended.Token).ConfigureAwait(false);
        }
        catch
        {
            DropNamedPut(entry.Id);
            throw;
        }

        lock (_sync)
        {
            Held(entry.Id).Push((entry.Block, use));
        }

        return new AllocateOk(entry.Id, Map(entry.Device, use));
    }

    /// <summary>A block for a new version of a name, in its scope's partition, this session's until committed (or dropped); the load it belongs to if this session loads the name.</summary>
    private async Task<DataEntry> BeginNamedAsync(string ns, string name, long length, int deviceIndex, bool allocation = false)
    {
        var key = NameOf(ns, name);
        var device = DeviceAt(deviceIndex);
        if (length <= 0)
        {
            throw new TubeException(TubeError.BadRequest, $"{length} bytes asked for.");
        }

        _node.Names.CheckRoom(key);
        CheckRoomToHold();
        var load = _node.Names.LoadOf(key, Id);
        var options = new BlockOptions { Function = _function, Holder = Holder, Partition = key.Scope };
        var block = await AllocateInTurnAsync(device.Pool, length, options).ConfigureAwait(false);
        var entry = new DataEntry(TubeId.NewId(_node.Settings.NodeNumber), key.Scope, device.Device.Ordinal, block, Id) { IsAllocation = allocation };
        lock (_sync)
        {
            _namedPuts[entry.Id] = (entry, key, load, _node.Services.TimeProvider.GetTimestamp());
        }

        Interlocked.Increment(ref _unfinishedPuts);
        return entry;
    }

    /// <summary>
    /// The named Put becomes the name's current version; the version before leaves the directory (its
    /// readers keep it until they release). A cacheable one is charged to its scope's cache, not its
    /// quota (<see cref="GpuMemoryPool.MoveToCache"/>). A Put of a load that failed since (timed out) is refused.
    /// </summary>
    private NamedCommitOk CommitNamed(NamedCommit request)
    {
        var (id, cacheable, loadTicks) = request;
        if (loadTicks < 0 || loadTicks > _node.Settings.MaxTtl.Ticks)
        {
            DropNamedPut(id); // every answer to a NamedCommit means the Put is out of the client's hands (docs/protocol.md)
            throw new TubeException(TubeError.BadRequest, $"A load time of {loadTicks} ticks: it must be 0 (unknown) up to {_node.Settings.MaxTtl}.");
        }

        (DataEntry Entry, NameKey Key, PendingLoad? Load, long Began) put;
        lock (_sync)
        {
            if (!_namedPuts.Remove(id, out put))
            {
                throw new TubeException(TubeError.NotFound, $"No unfinished named Put {id} of this client."); // NotFound, as any id of another workflow
            }
        }

        Interlocked.Decrement(ref _unfinishedPuts);
        var entry = put.Entry;

        // The reload cost the cache values it by is the client's claim, bounded by what the node saw:
        // the time since the load was handed to this loader (or, for a plain named Put, since it began).
        // A tenant cannot make its objects the last to go in a shared namespace by claiming hours.
        var observed = _node.Services.TimeProvider.GetElapsedTime(put.Load?.StartedAt ?? put.Began);
        loadTicks = Math.Min(loadTicks, observed.Ticks);
        lock (entry.Sync)
        {
            entry.Block.AddLease(DataEntry.DirectoryHolder);
            if (!cacheable)
            {
                entry.Block.Pool.ExemptFromEviction(entry.Block);
            }

            entry.KeepUntilDeleted = !cacheable; // replicas of a pinned object are pinned too
            entry.RemainingConsumers = -1;
            entry.ExpiresAt = null;
            entry.Committed = true;
            entry.OwnerSession = 0;
        }

        if (!entry.IsAllocation || !DropHeld(id)) // an allocation's use and lease go together
        {
            entry.Block.Pool.Release(entry.Block, Holder);
        }

        try
        {
            _node.Names.EnsureLive(put.Key, put.Load); // a failed load's late commit changes nothing, the cache included
            if (cacheable)
            {
                entry.Block.Pool.MoveToCache(entry.Block); // the scope's cache pays for it, not its quota (least valuable cached objects dropped if it must)
            }

            var (version, previous) = _node.Names.Commit(put.Key, entry, TimeSpan.FromTicks(loadTicks), put.Load);
            if (cacheable)
            {
                // Only once it is the name's version: a drop before would find nothing to forget and free nothing.
                var node = _node;
                var key = put.Key;
                var decay = new CacheDecay(node.Services.TimeProvider, node.Settings.CacheHalfLife);
                var cache = CacheValue.For(entry.Length, node.Devices[entry.Device].Device.HostLinkBytesPerSecond, TimeSpan.FromTicks(loadTicks), decay);
                cache.Drop = () => CacheDrops.Version(node.Names, node.Directory, key, entry);
                entry.Block.Cache = cache;
            }

            if (previous is not null)
            {
                _node.Directory.Remove(previous); // the directory's leases go; readers' leases keep it
            }

            return new NamedCommitOk(version);
        }
        catch
        {
            _node.Directory.Remove(entry);
            throw;
        }
    }

    /// <summary>
    /// The current version on the asked GPU (a replica made there once if need be); a load in progress
    /// is waited for (outside the request slots, at most the request's wait and <see cref="TubeNodeOptions.MaxPublishWait"/>),
    /// its failure thrown to every waiter; with load asked, a name nobody loads makes this client its loader.
    /// </summary>
    /// <summary>A peer's copy of a name this node lacks; for a Get that may load, false when no peer has it (the caller becomes its loader, as without peers).</summary>
    private async Task<bool> FetchNamedOrMissAsync(PeerFetcher peers, string nameSpace, string name, bool load)
    {
        try
        {
            return await peers.FetchNamedAsync(_workflow, nameSpace, name, _ended.Token).ConfigureAwait(false);
        }
        catch (TubeException e) when (e.Error == TubeError.NotFound && load)
        {
            return false;
        }
    }

    private async Task<(IMessage, string)> NamedGetAsync(NamedGet request)
    {
        var (ns, name, device, waitMilliseconds, load) = request;
        var key = NameOf(ns, name);
        if (device != -1)
        {
            _ = DeviceAt(device); // a GPU, or -1: a read to host memory (GetToHost parts follow)
        }

        if (waitMilliseconds < 0)
        {
            throw new TubeException(TubeError.BadRequest, $"A wait of {waitMilliseconds} ms.");
        }

        var wait = TimeSpan.FromMilliseconds(waitMilliseconds);
        wait = wait < _node.Settings.MaxPublishWait ? wait : _node.Settings.MaxPublishWait;
        bool waited = false;
        bool fetched = !_node.Names.Has(key) && _node.PeerFetches is { } peers && peers.Serves(_workflow, _function)
            && await WaitOutsideSlotAsync(() => FetchNamedOrMissAsync(peers, ns, name, load)).ConfigureAwait(false); // not here: asked of the peers first (src/FaaSTube/Channels/Peers)
        for (int attempt = 0; ; attempt++)
        {
            var (result, entry, version, pending) = _node.Names.Lookup(key, Id, load);
            switch (result)
            {
                case NamedGetResult.Load:
                    return (new NamedGetOk(NamedGetStatus.Load, default, 0, 0, TubePath.HostStaged, null), "control");
                case NamedGetResult.Pending when waited || wait <= TimeSpan.Zero:
                    return (new NamedGetOk(NamedGetStatus.Pending, default, 0, 0, TubePath.HostStaged, null), "control");
                case NamedGetResult.Pending:
                    waited = true;
                    _node.Names.OnWaiting(key);
                    bool done = await WaitOutsideSlotAsync(async () =>
                    {
                        try
                        {
                            await pending!.WaitAsync(wait, _node.Services.TimeProvider, _ended.Token).ConfigureAwait(false);
                            return true;
                        }
                        catch (TimeoutException)
                        {
                            return false;
                        }
                    }).ConfigureAwait(false); // a failed load throws its LoadFailed here, to every waiter
                    if (!done)
                    {
                        return (new NamedGetOk(NamedGetStatus.Pending, default, 0, 0, TubePath.HostStaged, null), "control");
                    }

                    continue;
            }

            CheckRoomToHold();
            var current = entry!;
            current.Block.Cache?.Hit();
            var leased = await LeaseAsync(current, device, () => !current.Removed).ConfigureAwait(false);
            if (leased is { } got)
            {
                var path = fetched ? TubePath.NodeFetch : got.Path;
                return (new NamedGetOk(NamedGetStatus.Found, current.Id, version, got.Length, path, got.Mapping), path.Tag());
            }

            if (attempt >= 16)
            {
                throw new TubeException(TubeError.NotFound, $"'{name}' changed under 16 Gets in a row; ask again.");
            }

            // replaced or deleted between the lookup and the lease: look again
        }
    }

    private NamedWhereOk LocateNamed(NamedWhere request)
    {
        var (entry, version) = _node.Names.Current(NameOf(request.Namespace, request.Name));
        long mask = 0;
        lock (entry.Sync)
        {
            foreach (int device in entry.Replicas.Keys.Append(entry.Device).Where(d => d < 64))
            {
                mask |= 1L << device; // a node of more than 64 GPUs reports the first 64
            }
        }

        return new NamedWhereOk(mask, version);
    }

    private Empty FailLoad(NamedLoadFailed request)
    {
        var key = NameOf(request.Namespace, request.Name);
        return _node.Names.Fail(key, Id, $"The load of '{key.Name}' failed: {request.Message}")
            ? default
            : throw new TubeException(TubeError.BadRequest, $"This client loads no '{key.Name}'.");
    }

    private Empty RemoveNamed(NamedDelete request)
    {
        _node.Directory.Remove(_node.Names.Delete(NameOf(request.Namespace, request.Name)));
        return default;
    }
}
