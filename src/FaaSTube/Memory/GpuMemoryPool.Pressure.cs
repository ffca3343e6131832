using System.Text;
using FaaSTube.Devices;

namespace FaaSTube.Memory;

/// <summary>Growth, eviction and restore: the paths taken only when a slab has no room.</summary>
public sealed partial class GpuMemoryPool
{
    private readonly Lock _growLock = new();
    private readonly SemaphoreSlim _pressure = new(1, 1);
    private readonly SpillStore _spill;
    private readonly Lazy<GpuStream> _stream;
    private volatile Slab?[] _slabs = [];
    private int[] _generations = [];
    private long _reserved;
    private TaskCompletionSource _memoryChanged = NewSignal();
    private int _restoreScheduled;
    private Task _proactiveRestore = Task.CompletedTask;
    private long _evictions, _evictedBytes, _restores, _restoredBytes;

    /// <summary>Slabs are whole MiB: a request larger than <see cref="GpuPoolOptions.SlabBytes"/> gets a slab rounded up to this.</summary>
    private const long SlabRounding = 1L << 20;

    private long _slabsCleared;

    /// <summary>What a growth attempt did.</summary>
    private enum Growth
    {
        /// <summary>A slab was added (and cleared): try placing again.</summary>
        Grown,

        /// <summary>The cap or the device's free memory blocks it and nothing empty could be given back.</summary>
        Blocked,

        /// <summary>Blocked, but empty slabs that importers have open are retiring: memory comes back when they close them.</summary>
        Pending,
    }

    /// <summary>New slabs zero-filled on the device (tests check the clearing path ran).</summary>
    internal long SlabsCleared => Interlocked.Read(ref _slabsCleared);

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
    /// The slow path: under the pressure gate, grow or evict; when nothing can give, wait for memory
    /// to change. Only those waits count against <see cref="GpuPoolOptions.AllocationTimeout"/> (zero:
    /// fail at once when nothing can give).
    /// </summary>
    private async Task PlaceUnderPressureAsync(PoolBlock block, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.AllocationTimeout);
        try
        {
            while (true)
            {
                var changed = _memoryChanged.Task; // taken before trying, so a change during the attempt is not missed
                await _pressure.WaitAsync(cancellationToken).ConfigureAwait(false);
                (Slab Slab, long Offset)? place;
                try
                {
                    place = await MakeRoomAsync(block.Rounded, block.Partition, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    _pressure.Release();
                }

                if (place is { } p)
                {
                    block.Slab = p.Slab;
                    block.Offset = p.Offset;
                    return;
                }

                await changed.WaitAsync(timeout.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new PoolException(PoolError.OutOfMemory, DescribePressure(block.Rounded, block.Partition));
        }
    }

    /// <summary>
    /// Place in a slab of <paramref name="partition"/>, else grow one for it, else evict one victim
    /// and try again; null when nothing can give (or when retiring slabs must be closed first).
    /// Holds the pressure gate.
    /// </summary>
    private async Task<(Slab, long)?> MakeRoomAsync(long rounded, string partition, CancellationToken cancellationToken)
    {
        while (true)
        {
            if (TryPlace(rounded, partition, out var slab, out long offset))
            {
                return (slab, offset);
            }

            var growth = await TryGrowAsync(rounded, partition, cancellationToken).ConfigureAwait(false);
            if (growth == Growth.Grown)
            {
                continue;
            }

            // Pending: the memory comes back when importers close the retiring slabs; meanwhile only
            // the asker's own blocks are worth evicting (emptying other partitions' slabs would not help sooner).
            if (NextVictim(partition, ownOnly: growth == Growth.Pending) is not { } victim
                || !await TryEvictAsync(victim, cancellationToken).ConfigureAwait(false))
            {
                return null;
            }
        }
    }

    /// <summary>
    /// Adds a slab of <paramref name="partition"/> for <paramref name="rounded"/> bytes if the cap and
    /// the device's free memory allow, after giving empty slabs back when they do not (memory moves
    /// between partitions only this way: a slab is freed to the device, and a new one grown). A new
    /// slab is cleared on the device before it takes a block, unless the backend zeroes fresh memory.
    /// </summary>
    private async Task<Growth> TryGrowAsync(long rounded, string partition, CancellationToken cancellationToken)
    {
        long size = Math.Max(_options.SlabBytes, (rounded + SlabRounding - 1) & ~(SlabRounding - 1));
        bool clear = _options.AlwaysClearNewSlabs || !Device.FreshAllocationsAreZeroed;
        var retiring = new List<SlabRetiringEventArgs>();
        Slab? slab = null;
        Growth growth;
        lock (_growLock)
        {
            growth = MakeDeviceRoomLocked(size, retiring);
            if (growth == Growth.Grown)
            {
                try
                {
                    slab = AddSlabLocked(Device.Allocate(size), partition, clear ? SlabState.Clearing : SlabState.Active);
                }
                catch (DeviceOutOfMemoryException)
                {
                    growth = Growth.Blocked;
                }
            }
        }

        RaiseRetiring(retiring);
        if (slab is not null && clear)
        {
            await ClearAsync(slab, cancellationToken).ConfigureAwait(false);
        }

        return growth;
    }

    /// <summary>True when a slab of <paramref name="size"/> bytes fits under the cap and the device's free-memory fraction.</summary>
    private bool CanReserveLocked(long size) =>
        _reserved + size <= _options.MaxBytes && size <= _options.MaxFreeMemoryFraction * Device.GetMemoryInfo().Free;

    /// <summary>
    /// Makes room on the device for a slab of <paramref name="size"/>: frees empty slabs that no
    /// importer has open (oldest empty first, any partition: an empty slab holds no one's data), then
    /// starts retiring empty slabs that importers have open. Holds the grow lock.
    /// </summary>
    private Growth MakeDeviceRoomLocked(long size, List<SlabRetiringEventArgs> retiring)
    {
        if (CanReserveLocked(size))
        {
            return Growth.Grown;
        }

        var empty = _slabs
            .Where(s => s is { State: SlabState.Active, EmptySince: not null })
            .Select(s => s!)
            .OrderBy(s => s.HasImporters)
            .ThenBy(s => s.EmptySince)
            .ToList();
        foreach (var slab in empty.Where(s => !s.HasImporters))
        {
            RetireLocked(slab, retiring);
            if (CanReserveLocked(size))
            {
                return Growth.Grown;
            }
        }

        // What is still missing, under the cap and under the fraction of free memory; slabs already
        // retiring count towards it (they come back when their importers close them).
        long shortfall = Math.Max(
            _reserved + size - _options.MaxBytes,
            (long)Math.Ceiling(size / _options.MaxFreeMemoryFraction) - Device.GetMemoryInfo().Free);
        long coming = _slabs.Where(s => s is { State: SlabState.Retiring }).Sum(s => s!.Capacity);
        foreach (var slab in empty)
        {
            if (coming >= shortfall)
            {
                break;
            }

            if (slab.State == SlabState.Active && RetireLocked(slab, retiring))
            {
                coming += slab.State == SlabState.Retiring ? slab.Capacity : 0;
                if (CanReserveLocked(size))
                {
                    return Growth.Grown; // its importers had closed it meanwhile: freed at once
                }
            }
        }

        return coming > 0 && coming >= shortfall ? Growth.Pending : Growth.Blocked;
    }

    /// <summary>Puts a new slab in a free slot (or a new one), with the slot's next generation. Holds the grow lock.</summary>
    private Slab AddSlabLocked(DeviceBuffer buffer, string partition, SlabState state)
    {
        var slabs = _slabs;
        int slot = Array.IndexOf(slabs, null);
        if (slot < 0)
        {
            slot = slabs.Length;
            Array.Resize(ref slabs, slot + 1);
            Array.Resize(ref _generations, slot + 1);
        }
        else
        {
            slabs = (Slab?[])slabs.Clone();
        }

        var slab = new Slab(slot, ++_generations[slot], buffer, partition, state);
        if (state == SlabState.Active)
        {
            slab.MarkEmptySince(Now);
        }

        slabs[slot] = slab;
        _slabs = slabs;
        _reserved += buffer.Length;
        return slab;
    }

    /// <summary>
    /// Zero-fills a new slab through the pool's stream, then lets it take blocks: memory changes owner
    /// only once cleared on the device. If the fill fails the slab goes back to the device unused.
    /// </summary>
    private async Task ClearAsync(Slab slab, CancellationToken cancellationToken)
    {
        try
        {
            await _stream.Value.FillAsync(slab.Buffer.Slice(0, slab.Capacity), 0, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            lock (_growLock)
            {
                if (slab.State == SlabState.Clearing)
                {
                    FreeSlabLocked(slab);
                }
            }

            throw;
        }

        slab.Activate(Now);
        Interlocked.Increment(ref _slabsCleared);
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

    /// <summary>Copies a block to the spill store and frees its device range; false when the spill store is full.</summary>
    private async Task<bool> TryEvictAsync(PoolBlock block, CancellationToken cancellationToken)
    {
        var entry = _spill.TryReserve(block.Length);
        if (entry is null)
        {
            return false;
        }

        Slab slab;
        lock (block.Sync)
        {
            if (block.Slab is null || block.IsMoving || block.Uses > 0 || block.Freed || block.IsPinned)
            {
                entry.Dispose();
                return true; // it changed under us (used, freed, or pinned after the fact): pick again
            }

            block.IsMoving = true;
            slab = block.Slab;
        }

        try
        {
            await entry.WriteFromDeviceAsync(_stream.Value, slab.Buffer.Slice(block.Offset, block.Length), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            lock (block.Sync)
            {
                block.IsMoving = false;
                entry.Dispose();
                if (block.Freed)
                {
                    ReleaseStorageLocked(block);
                }
            }

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
        PoolMetrics.Evictions.Add(1, PoolMetrics.Tag(this));
        PoolMetrics.EvictedBytes.Add(block.Length, PoolMetrics.Tag(this));
        return true;
    }

    /// <summary>Brings an evicted block back (making room as an allocation would), then begins the use.</summary>
    private async Task<BlockUse> RestoreForUseAsync(PoolBlock block, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.AllocationTimeout);
        try
        {
            while (true)
            {
                var changed = _memoryChanged.Task;
                await _pressure.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    if (TryBeginUse(block) is { } use)
                    {
                        return use;
                    }

                    if (await MakeRoomAsync(block.Rounded, block.Partition, cancellationToken).ConfigureAwait(false) is { } place)
                    {
                        await RestoreIntoAsync(block, place.Item1, place.Item2, cancellationToken).ConfigureAwait(false);
                        if (TryBeginUse(block) is { } restored)
                        {
                            return restored;
                        }

                        continue; // moved or evicted again meanwhile: try again at once
                    }
                }
                finally
                {
                    _pressure.Release();
                }

                await changed.WaitAsync(timeout.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new PoolException(PoolError.OutOfMemory, $"Restoring {block}: " + DescribePressure(block.Rounded, block.Partition));
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

            block.IsMoving = true;
            entry = block.Spill;
        }

        try
        {
            await entry.ReadToDeviceAsync(_stream.Value, slab.Buffer.Slice(offset, block.Length), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
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
                return false;
            }
        }

        Interlocked.Increment(ref _restores);
        Interlocked.Add(ref _restoredBytes, block.Length);
        PoolMetrics.Restores.Add(1, PoolMetrics.Tag(this));
        PoolMetrics.RestoredBytes.Add(block.Length, PoolMetrics.Tag(this));
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
        await _pressure.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var evicted = _blocks.Values
                .Where(b => { lock (b.Sync) { return b.Spill is not null && !b.IsMoving && !b.Freed; } })
                .OrderBy(b => b.NextUse ?? double.PositiveInfinity)
                .ThenByDescending(b => b.LastUse)
                .ToList();
            int restored = 0;
            foreach (var block in evicted)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (TryPlace(block.Rounded, block.Partition, out var slab, out long offset))
                {
                    restored += await RestoreIntoAsync(block, slab, offset, cancellationToken).ConfigureAwait(false) ? 1 : 0;
                }
            }

            return restored;
        }
        finally
        {
            _pressure.Release();
        }
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
