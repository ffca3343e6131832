using System.Text;
using FaaSTube.Devices;
using FaaSTube.Diagnostics;

namespace FaaSTube.Memory;

/// <summary>Placement under pressure, eviction and restore: the paths taken only when a slab has no room (growth itself: <c>GpuMemoryPool.Growth.cs</c>).</summary>
public sealed partial class GpuMemoryPool
{
    private readonly Lock _growLock = new();
    private readonly SemaphoreSlim _pressure = new(1, 1);
    private readonly SpillStore _spill;
    /// <summary>
    /// The streams that move blocks (evict, restore, clear), one per lane; a block moves on its
    /// partition's lane, so a tenant's multi-GiB move queues only behind its own lane's work, not in
    /// front of every other tenant's small evictions (a single stream was head-of-line blocking).
    /// </summary>
    private readonly Lazy<GpuStream>[] _streams;

    private const int MoveLanes = 4;

    private GpuStream StreamFor(string partition) => _streams[(uint)StringComparer.Ordinal.GetHashCode(partition) % MoveLanes].Value;
    private volatile Slab?[] _slabs = [];
    private int[] _generations = [];
    private long _reserved;
    private TaskCompletionSource _memoryChanged = NewSignal();
    private int _restoreScheduled;
    private Task _proactiveRestore = Task.CompletedTask;
    private long _evictions, _evictedBytes, _restores, _restoredBytes;
    private int _slowPathWaiters;
    private int _movesInFlight;

    /// <summary>
    /// Finds room in an active slab of <paramref name="partition"/> (never another partition's: a
    /// client that maps the slab may see only its own partition's bytes), starting at a per-thread
    /// slab to spread lock traffic.
    /// </summary>
    private bool TryPlace(long rounded, string partition, out Slab slab, out long offset)
    {
        var slabs = _slabs;
        int n = slabs.Length;
        int start = n == 0 ? 0 : Environment.CurrentManagedThreadId % n;
        for (int i = 0; i < n; i++)
        {
            if (slabs[(start + i) % n] is { } candidate
                && string.Equals(candidate.Partition, partition, StringComparison.Ordinal)
                && (offset = candidate.TryAllocate(rounded)) >= 0)
            {
                slab = candidate;
                Interlocked.Add(ref _inUse, rounded);
                return true;
            }
        }

        slab = null!;
        offset = -1;
        return false;
    }

    /// <summary>
    /// The slow path. Decisions (place, grow, pick a victim) are taken under the pressure gate; the
    /// bulk copy of an eviction runs after the gate is released, so one tenant's large eviction never
    /// holds everybody else's allocations behind it. When nothing can give, it waits for memory to
    /// change. Only those waits count against <see cref="GpuPoolOptions.AllocationTimeout"/> (zero:
    /// fail at once when nothing can give).
    /// </summary>
    private async Task PlaceUnderPressureAsync(PoolBlock block, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.AllocationTimeout);
        Interlocked.Increment(ref _slowPathWaiters);
        try
        {
            while (true)
            {
                var changed = _memoryChanged.Task; // taken before trying, so a change during the attempt is not missed
                await _pressure.WaitAsync(cancellationToken).ConfigureAwait(false);
                RoomStep? step;
                try
                {
                    step = MakeRoom(block.Rounded, block.Partition);
                }
                finally
                {
                    _pressure.Release();
                }

                if (step is { Eviction: { } eviction })
                {
                    await FinishEvictionAsync(eviction, cancellationToken).ConfigureAwait(false);
                    continue; // the victim's range is free now: try again at once
                }

                if (step is { ToClear: { } grown })
                {
                    await ClearAsync(grown, cancellationToken).ConfigureAwait(false);
                    continue; // a new slab of its partition: try again at once
                }

                if (step is { Slab: { } slab })
                {
                    block.Slab = slab;
                    block.Offset = step.Value.Offset;
                    return;
                }

                await changed.WaitAsync(timeout.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new PoolException(PoolError.OutOfMemory, DescribePressure(block.Rounded, block.Partition));
        }
        finally
        {
            Interlocked.Decrement(ref _slowPathWaiters);
        }
    }

    /// <summary>What one decision under the gate produced: a place (slab and offset), or an eviction to finish outside the gate.</summary>
    private readonly record struct RoomStep(Slab? Slab, long Offset, Eviction? Eviction, Slab? ToClear = null);

    /// <summary>A victim marked as moving and its reserved spill entry: the copy still has to run.</summary>
    /// <param name="Block">The victim, marked moving.</param>
    /// <param name="Slab">Where it is now.</param>
    /// <param name="Entry">Its reserved spill entry.</param>
    /// <param name="Lane">The asker's partition: the copy runs on its move lane, so a tenant that forces evictions waits on its own lane, not the victim's.</param>
    private sealed record Eviction(PoolBlock Block, Slab Slab, SpillStore.SpillEntry Entry, string Lane);

    /// <summary>
    /// Place in a slab of <paramref name="partition"/>, else grow one for it, else evict one victim
    /// and try again; null when nothing can give (or when retiring slabs must be closed first).
    /// Holds the pressure gate; never waits (what takes time, the copies and the clearing, the caller
    /// runs after releasing it).
    /// </summary>
    private RoomStep? MakeRoom(long rounded, string partition)
    {
        while (true)
        {
            if (TryPlace(rounded, partition, out var slab, out long offset))
            {
                return new RoomStep(slab, offset, null);
            }

            var (growth, toClear) = TryGrow(rounded, partition);
            if (toClear is not null)
            {
                return new RoomStep(null, 0, null, toClear);
            }

            if (growth == Growth.Grown)
            {
                continue;
            }

            // Pending: the memory comes back when importers close the retiring slabs; meanwhile only
            // the asker's own blocks are worth evicting (emptying other partitions' slabs would not help sooner).
            if (NextVictim(partition, ownOnly: growth == Growth.Pending) is not { } victim || !TryBeginEviction(victim, partition, out var eviction))
            {
                return null;
            }

            if (eviction is not null)
            {
                return new RoomStep(null, 0, eviction);
            }
        }
    }

    /// <summary>
    /// The block to evict next, or null. Blocks in the asker's own partition come first (evicting them
    /// frees room it can use), by <see cref="EvictionOrder"/>. Another partition's block only helps when
    /// its slab empties and can be freed, so those victims come from one slab at a time: the one with
    /// the fewest bytes in use whose blocks can all go (no importer first), best block by
    /// <see cref="EvictionOrder"/> within it. Never an in-use, pinned, moving or non-resident block.
    /// </summary>
    private PoolBlock? NextVictim(string partition, bool ownOnly)
    {
        EvictionOrder.Candidate? own = null;
        var others = new Dictionary<Slab, (EvictionOrder.Candidate? Best, bool Stuck)>();
        foreach (var block in _blocks.Values)
        {
            EvictionOrder.Candidate candidate;
            Slab slab;
            bool evictable;
            lock (block.Sync)
            {
                if (block.Slab is null || block.Freed)
                {
                    continue;
                }

                slab = block.Slab;
                evictable = !block.IsMoving && block.Uses == 0 && !block.IsPinned;
                candidate = new EvictionOrder.Candidate(block, block.NextUse, block.LastUse);
            }

            if (string.Equals(slab.Partition, partition, StringComparison.Ordinal))
            {
                if (evictable && (own is null || EvictionOrder.Instance.Compare(candidate, own.Value) < 0))
                {
                    own = candidate;
                }
            }
            else if (!ownOnly)
            {
                var (best, stuck) = others.GetValueOrDefault(slab);
                if (!evictable)
                {
                    stuck = true;
                }
                else if (best is null || EvictionOrder.Instance.Compare(candidate, best.Value) < 0)
                {
                    best = candidate;
                }

                others[slab] = (best, stuck);
            }
        }

        if (own is not null)
        {
            return own.Value.Block;
        }

        return others
            .Where(e => !e.Value.Stuck && e.Value.Best is not null)
            .OrderBy(e => e.Key.HasImporters)
            .ThenBy(e => e.Key.Capacity - e.Key.FreeBytes)
            .ThenBy(e => e.Value.Best!.Value, EvictionOrder.Instance)
            .Select(e => e.Value.Best!.Value.Block)
            .FirstOrDefault();
    }

    /// <summary>
    /// Starts evicting <paramref name="block"/> (under the gate): reserves its spill entry and marks it
    /// moving. False when the spill store is full; true with a null eviction when the block changed
    /// under us (used, freed, or pinned after the fact): pick again.
    /// </summary>
    private bool TryBeginEviction(PoolBlock block, string lane, out Eviction? eviction)
    {
        eviction = null;
        if (Volatile.Read(ref _disposed) != 0)
        {
            return false;
        }

        var entry = _spill.TryReserve(block.Length);
        if (entry is null)
        {
            return false;
        }

        lock (block.Sync)
        {
            if (block.Slab is not { } slab || block.IsMoving || block.Uses > 0 || block.Freed || block.IsPinned)
            {
                entry.Dispose();
                return true;
            }

            block.IsMoving = true;
            Interlocked.Increment(ref _movesInFlight);
            eviction = new Eviction(block, slab, entry, lane);
            return true;
        }
    }

    /// <summary>Copies an evicted block to its spill entry and frees its device range (outside the gate); wakes those waiting for memory.</summary>
    private async Task FinishEvictionAsync(Eviction eviction, CancellationToken cancellationToken)
    {
        var (block, slab, entry, lane) = eviction;
        using var span = PoolMetrics.StartMove(this, block.Length, evict: true);
        try
        {
            await entry.WriteFromDeviceAsync(StreamFor(lane), slab.Buffer.Slice(block.Offset, block.Length), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Spans.Fail(span, e);
            lock (block.Sync)
            {
                block.IsMoving = false;
                entry.Dispose();
                if (block.Freed)
                {
                    ReleaseStorageLocked(block);
                }
            }

            MoveEnded();
            throw;
        }

        lock (block.Sync)
        {
            block.IsMoving = false;
            slab.Free(block.Offset, block.Rounded, Now);
            Interlocked.Add(ref _inUse, -block.Rounded);
            block.Slab = null;
            if (block.Freed)
            {
                entry.Dispose();
            }
            else
            {
                block.Spill = entry;
            }
        }

        Interlocked.Increment(ref _evictions);
        Interlocked.Add(ref _evictedBytes, block.Length);
        _metrics.RecordMove(this, block.Length, evict: true);
        MoveEnded();
    }

    /// <summary>A move (eviction or restore) is over: wakes those waiting for memory or for the block, and a dispose waiting for moves.</summary>
    private void MoveEnded()
    {
        Interlocked.Decrement(ref _movesInFlight);
        SignalMemoryChange();
    }

    /// <summary>Brings an evicted block back (making room as an allocation would), then begins the use.</summary>
    private async Task<BlockUse> RestoreForUseAsync(PoolBlock block, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.AllocationTimeout);
        Interlocked.Increment(ref _slowPathWaiters);
        try
        {
            while (true)
            {
                var changed = _memoryChanged.Task;
                await _pressure.WaitAsync(cancellationToken).ConfigureAwait(false);
                RoomStep? step = null;
                bool moving;
                try
                {
                    if (TryBeginUse(block) is { } use)
                    {
                        return use;
                    }

                    lock (block.Sync)
                    {
                        moving = block.IsMoving;
                    }

                    if (!moving)
                    {
                        step = MakeRoom(block.Rounded, block.Partition);
                    }
                }
                finally
                {
                    _pressure.Release();
                }

                if (moving)
                {
                    await changed.WaitAsync(cancellationToken).ConfigureAwait(false); // another path moves it now; its end signals
                }
                else if (step is { Eviction: { } eviction })
                {
                    await FinishEvictionAsync(eviction, cancellationToken).ConfigureAwait(false);
                }
                else if (step is { ToClear: { } grown })
                {
                    await ClearAsync(grown, cancellationToken).ConfigureAwait(false);
                }
                else if (step is { Slab: { } slab })
                {
                    await RestoreIntoAsync(block, slab, step.Value.Offset, cancellationToken).ConfigureAwait(false);
                    if (TryBeginUse(block) is { } restored)
                    {
                        return restored;
                    }
                }
                else
                {
                    await changed.WaitAsync(timeout.Token).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new PoolException(PoolError.OutOfMemory, $"Restoring {block}: " + DescribePressure(block.Rounded, block.Partition));
        }
        finally
        {
            Interlocked.Decrement(ref _slowPathWaiters);
        }
    }

    /// <summary>Copies a spilled block into [offset, +rounded) of <paramref name="slab"/>; false (range given back) if it was freed meanwhile.</summary>
    private async Task<bool> RestoreIntoAsync(PoolBlock block, Slab slab, long offset, CancellationToken cancellationToken)
    {
        SpillStore.SpillEntry entry;
        lock (block.Sync)
        {
            if (block.Freed || block.Spill is null || block.IsMoving)
            {
                slab.Free(offset, block.Rounded, Now); // freed, already back, or being moved by another path
                Interlocked.Add(ref _inUse, -block.Rounded);
                return false;
            }

            if (Volatile.Read(ref _disposed) != 0)
            {
                return false; // the pool is going: its slabs go with it
            }

            block.IsMoving = true;
            Interlocked.Increment(ref _movesInFlight);
            entry = block.Spill;
        }

        using var span = PoolMetrics.StartMove(this, block.Length, evict: false);
        try
        {
            await entry.ReadToDeviceAsync(StreamFor(block.Partition), slab.Buffer.Slice(offset, block.Length), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Spans.Fail(span, e);
            lock (block.Sync)
            {
                block.IsMoving = false;
                slab.Free(offset, block.Rounded, Now);
                Interlocked.Add(ref _inUse, -block.Rounded);
                if (block.Freed)
                {
                    ReleaseStorageLocked(block);
                }
            }

            MoveEnded();
            throw;
        }

        lock (block.Sync)
        {
            block.IsMoving = false;
            block.Slab = slab;
            block.Offset = offset;
            block.Spill = null;
            entry.Dispose();
            if (block.Freed)
            {
                ReleaseStorageLocked(block);
                MoveEnded();
                return false;
            }
        }

        MoveEnded(); // whoever waited for it to stop moving

        Interlocked.Increment(ref _restores);
        Interlocked.Add(ref _restoredBytes, block.Length);
        _metrics.RecordMove(this, block.Length, evict: false);
        return true;
    }

    /// <summary>
    /// Restores evicted blocks into free space (no growth, no eviction), soonest-needed first;
    /// returns how many came back. Runs by itself after frees when
    /// <see cref="GpuPoolOptions.ProactiveRestore"/> is on.
    /// </summary>
    /// <param name="cancellationToken">Stops between blocks.</param>
    public async Task<int> RestoreEvictedAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        var evicted = _blocks.Values
            .Where(b => { lock (b.Sync) { return b.Spill is not null && !b.IsMoving && !b.Freed; } })
            .OrderBy(b => b.NextUse ?? double.PositiveInfinity)
            .ThenByDescending(b => b.LastUse)
            .ToList();
        int restored = 0;
        foreach (var block in evicted)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (Volatile.Read(ref _slowPathWaiters) > 0)
            {
                break; // allocations wait for memory: they come first
            }

            Slab slab;
            long offset;
            await _pressure.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (!TryPlace(block.Rounded, block.Partition, out slab, out offset))
                {
                    continue;
                }
            }
            finally
            {
                _pressure.Release();
            }

            restored += await RestoreIntoAsync(block, slab, offset, cancellationToken).ConfigureAwait(false) ? 1 : 0;
        }

        return restored;
    }

    private void ScheduleProactiveRestore()
    {
        if (Volatile.Read(ref _evictions) > Volatile.Read(ref _restores) && Interlocked.Exchange(ref _restoreScheduled, 1) == 0)
        {
            _proactiveRestore = Task.Run(async () =>
            {
                try
                {
                    await RestoreEvictedAsync().ConfigureAwait(false);
                }
                catch (ObjectDisposedException)
                {
                    // The pool went away first.
                }
                finally
                {
                    Volatile.Write(ref _restoreScheduled, 0);
                }
            });
        }
    }

    /// <summary>The latest background restore (tests await it instead of sleeping).</summary>
    internal Task ProactiveRestore => Volatile.Read(ref _proactiveRestore);

    /// <summary>Wakes allocations waiting for memory: a block was freed or became evictable, or a slab went back.</summary>
    private void SignalMemoryChange() => Interlocked.Exchange(ref _memoryChanged, NewSignal()).TrySetResult();

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The out-of-memory message: what was asked, the limits, and who holds the memory.</summary>
    private string DescribePressure(long rounded, string partition)
    {
        var s = GetStatistics();
        var sb = new StringBuilder();
        sb.Append($"No room for {rounded} bytes of partition '{partition}' in the pool on {Device} within {_options.AllocationTimeout.TotalSeconds:0.###} s: ");
        sb.Append($"{s.ReservedBytes} bytes reserved (cap {_options.MaxBytes}, device free {Device.GetMemoryInfo().Free}), {s.InUseBytes} in use, ");
        sb.Append($"largest free range {_slabs.Where(x => x is not null).Select(x => x!.FreeSpace().Largest).DefaultIfEmpty(0).Max()}; ");
        sb.Append($"spill store {s.SpillHostBytes}/{_options.HostSpillBytes} host and {s.SpillFileBytes}/{_options.MaxSpillFileBytes} file bytes. Held by: ");
        var holders = _blocks.Values
            .Where(b => b.IsResident)
            .GroupBy(b => b.Function)
            .Select(g => $"{g.Key} ({g.Count()} blocks, {g.Sum(b => b.Rounded)} bytes, {g.Count(b => b.Uses > 0)} in use, {g.Count(b => b.IsPinned)} pinned)");
        sb.Append(string.Join(", ", holders.DefaultIfEmpty("nothing resident")));
        return sb.ToString();
    }
}
