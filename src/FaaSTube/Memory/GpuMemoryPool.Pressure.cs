using System.Text;
using FaaSTube.Devices;
using FaaSTube.Diagnostics;

namespace FaaSTube.Memory;

/// <summary>
/// Making room: the paths taken only when no slab has room. Decisions (place, grow, pick a victim)
/// are taken under the pressure gate; what takes time (a move's copy, a new slab's clearing) runs
/// after it is released.
/// </summary>
public sealed partial class GpuMemoryPool
{
    private readonly SemaphoreSlim _pressure = new(1, 1);
    private TaskCompletionSource _memoryChanged = NewSignal();
    private int _restoreScheduled;
    private Task _proactiveRestore = Task.CompletedTask;
    private int _slowPathWaiters;
    private long _slabsCleared;

    /// <summary>New slabs zero-filled on the device (tests check the clearing path ran).</summary>
    internal long SlabsCleared => Interlocked.Read(ref _slabsCleared);

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
                    await _mover.RunAsync(eviction, cancellationToken).ConfigureAwait(false);
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

    /// <summary>
    /// What one decision under the gate produced: a place (slab and offset), an eviction to run
    /// outside the gate (on the asker's lane, so a tenant that forces evictions waits on its own lane,
    /// not the victim's), or a new slab to clear.
    /// </summary>
    private readonly record struct RoomStep(Slab? Slab, long Offset, BlockMove? Eviction, Slab? ToClear = null);

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
            if (_slabs.TryPlace(rounded, partition, out var slab, out long offset))
            {
                return new RoomStep(slab, offset, null);
            }

            var retiring = new List<SlabRetiringEventArgs>();
            var (growth, toClear) = _slabs.TryGrow(rounded, partition, retiring);
            RaiseRetiring(retiring);
            if (growth == SlabGrowth.Grown)
            {
                StartTrimTimerOnce();
            }

            if (toClear is not null)
            {
                return new RoomStep(null, 0, null, toClear);
            }

            if (growth == SlabGrowth.Grown)
            {
                continue;
            }

            // Pending: the memory comes back when importers close the retiring slabs; meanwhile only
            // the asker's own blocks are worth evicting (emptying other partitions' slabs would not help sooner).
            if (EvictionOrder.NextVictim(_blocks.Values, partition, ownOnly: growth == SlabGrowth.Pending) is not { } victim)
            {
                return null;
            }

            if (!_mover.TryBeginEviction(victim, out var eviction))
            {
                // Nowhere to spill: a cached object is dropped (dropped last: only now), its owner frees
                // it off the gate and the asker goes on when memory changes; anything else waits as before.
                if (victim.Cache is { } cached && cached.TryClaimDrop())
                {
                    var drop = cached.Drop!;
                    ThreadPool.UnsafeQueueUserWorkItem(static d => d(), drop, preferLocal: false);
                }

                return null;
            }

            if (eviction is not null)
            {
                return new RoomStep(null, 0, eviction);
            }
        }
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
                    await _mover.RunAsync(eviction, cancellationToken).ConfigureAwait(false);
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

    /// <summary>Copies a spilled block into [offset, +rounded) of <paramref name="slab"/> (a range the caller took); false (range given back) if it was freed meanwhile.</summary>
    private async Task<bool> RestoreIntoAsync(PoolBlock block, Slab slab, long offset, CancellationToken cancellationToken) =>
        _mover.TryBeginRestore(block, slab, offset) is { } move && await _mover.RunAsync(move, cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// Zero-fills a new slab on a copy lane, then lets it take blocks: memory changes owner
    /// only once cleared on the device. If the fill fails the slab goes back to the device unused.
    /// </summary>
    private async Task ClearAsync(Slab slab, CancellationToken cancellationToken)
    {
        try
        {
            await _mover.ClearAsync(slab.Buffer.Slice(0, slab.Capacity), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            _slabs.FreeUncleared(slab);
            throw;
        }

        _slabs.Activate(slab);
        Interlocked.Increment(ref _slabsCleared);
        SignalMemoryChange(); // room for whoever waits in its partition
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
                if (!_slabs.TryPlace(block.Rounded, block.Partition, out slab, out offset))
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
        if (_counters.Evictions > _counters.Restores && Interlocked.Exchange(ref _restoreScheduled, 1) == 0)
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
        sb.Append($"largest free range {_slabs.Usage().LargestFree}; ");
        sb.Append($"spill store {s.SpillHostBytes}/{_options.HostSpillBytes} host and {s.SpillFileBytes}/{_options.MaxSpillFileBytes} file bytes. Held by: ");
        var holders = _blocks.Values
            .Where(b => b.IsResident)
            .GroupBy(b => b.Function)
            .Select(g => $"{g.Key} ({g.Count()} blocks, {g.Sum(b => b.Rounded)} bytes, {g.Count(b => b.Uses > 0)} in use, {g.Count(b => b.NeverEvict)} never evicted)");
        sb.Append(string.Join(", ", holders.DefaultIfEmpty("nothing resident")));
        return sb.ToString();
    }
}
