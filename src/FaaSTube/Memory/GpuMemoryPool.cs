using System.Collections.Concurrent;
using FaaSTube.Devices;

namespace FaaSTube.Memory;

/// <summary>
/// The elastic GPU memory pool of one device: intermediate data that functions pass to each other.
/// It takes memory from the device in slabs and sub-allocates blocks from them (best fit, 256-byte
/// aligned, per-slab locks: no global lock on the common path); grows up to its cap; gives empty
/// slabs back when the functions that needed them go idle (<see cref="Trim"/>); and under pressure
/// evicts the blocks needed furthest in the future to host memory or files, restoring them on use.
/// A block is never lost: if nothing can give, an allocation waits, then fails with
/// <see cref="PoolError.OutOfMemory"/> naming what holds the memory.
/// <para>Files: this one holds allocation, leases and uses; <c>.Pressure</c> placement, eviction and
/// restore; <c>.Growth</c> new slabs (per partition, cleared before use); <c>.Elastic</c> trimming,
/// slabs and importers.</para>
/// <para>Partitions (<see cref="BlockOptions.Partition"/>): a slab serves one partition for its whole
/// life and is cleared on the device before its first block, so nothing a client maps can hold
/// another partition's bytes; memory moves between partitions only by freeing an empty slab.</para>
/// </summary>
public sealed partial class GpuMemoryPool : IDisposable
{
    private static readonly BlockOptions DefaultBlock = new();

    private readonly GpuPoolOptions _options;
    private readonly PoolMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly long _start;
    private readonly ConcurrentDictionary<long, PoolBlock> _blocks = new();
    private readonly ConcurrentDictionary<long, ConcurrentDictionary<long, byte>> _holders = new();
    private readonly ConcurrentDictionary<string, FunctionWindow> _functions = new();
    private readonly ConcurrentDictionary<string, PartitionUsage> _partitionBytes = new(StringComparer.Ordinal);
    private long _nextBlockId;
    private long _inUse;
    private long _allocations;
    private int _disposed;

    /// <summary>Creates an empty pool on <paramref name="device"/> (memory is taken on first use).</summary>
    /// <param name="device">The device whose memory it holds.</param>
    /// <param name="options">Sizing and elasticity; null for the defaults.</param>
    public GpuMemoryPool(GpuDevice device, GpuPoolOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        _options = options ?? new GpuPoolOptions();
        _options.Validate();
        Device = device;
        _time = _options.TimeProvider;
        _start = _time.GetTimestamp();
        _spill = new SpillStore(device, _options);
        _streams = Enumerable.Range(0, MoveLanes).Select(_ => new Lazy<GpuStream>(() => device.CreateStream(), LazyThreadSafetyMode.ExecutionAndPublication)).ToArray();
        if (_options.TrimInterval is { } interval)
        {
            _trimTimer = _time.CreateTimer(_ => TrimQuietly(), null, interval, interval);
        }

        _metrics = PoolMetrics.For(meterFactory: null); // the composition root's IMeterFactory, once the options carry it
        _metrics.Register(this);
    }

    /// <summary>Identifies the pool in descriptors.</summary>
    public Guid Id { get; } = Guid.NewGuid();

    /// <summary>The device.</summary>
    public GpuDevice Device { get; }

    private TimeSpan Now => _time.GetElapsedTime(_start);

    /// <summary>
    /// Allocates a block of <paramref name="bytes"/> with one lease for <see cref="BlockOptions.Holder"/>,
    /// in a slab of <see cref="BlockOptions.Partition"/> (never in another partition's slab).
    /// Fast when a slab has room; otherwise grows, evicts, or waits (up to
    /// <see cref="GpuPoolOptions.AllocationTimeout"/>) for memory.
    /// </summary>
    /// <param name="bytes">Size, at least 1 and at most the pool's cap and the device's total memory.</param>
    /// <param name="options">Function, holder, partition, eviction hint; null for the defaults.</param>
    /// <param name="cancellationToken">Cancels a wait for memory.</param>
    /// <exception cref="PoolException"><see cref="PoolError.TooLarge"/>: the pool could never hold it (refused at once);
    /// <see cref="PoolError.QuotaExceeded"/>: its partition holds its quota already (refused at once);
    /// <see cref="PoolError.OutOfMemory"/>: nothing could give in time.</exception>
    public async ValueTask<PoolBlock> AllocateAsync(long bytes, BlockOptions? options = null, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        options ??= DefaultBlock;
        ArgumentNullException.ThrowIfNull(options.Function, nameof(options.Function));
        ArgumentNullException.ThrowIfNull(options.Partition, nameof(options.Partition));
        long rounded = RoundOrThrowTooLarge(bytes); // before any state is touched
        var usage = TakeQuota(options.Partition, rounded);
        FunctionWindow window;
        try
        {
            window = ArriveAt(options.Function, rounded);
        }
        catch
        {
            usage?.Give(rounded);
            throw;
        }

        var block = new PoolBlock(this, Interlocked.Increment(ref _nextBlockId), bytes, rounded, options, window) { Usage = usage };
        try
        {
            if (TryPlace(rounded, block.Partition, out var slab, out long offset))
            {
                block.Slab = slab;
                block.Offset = offset;
            }
            else
            {
                await PlaceUnderPressureAsync(block, cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            window.Depart();
            usage?.Give(rounded);
            throw;
        }

        block.LastUse = _time.GetTimestamp();
        _blocks[block.Id] = block;
        HolderIndex(options.Holder).TryAdd(block.Id, 0);
        Interlocked.Increment(ref _allocations);
        _metrics.Allocations.Add(1, PoolMetrics.Tag(this));
        return block;
    }

    /// <summary>The quota of a partition: <see cref="GpuPoolOptions.MaxPartitionBytes"/>, or half the device's memory.</summary>
    private long PartitionQuota => _options.MaxPartitionBytes ?? Device.TotalMemory / 2;

    /// <summary>
    /// Counts <paramref name="rounded"/> bytes against <paramref name="partition"/>'s quota and returns
    /// its counter (the block keeps it, so a free needs no lookup), or refuses with
    /// <see cref="PoolError.QuotaExceeded"/> at once. Partition "" is not counted.
    /// </summary>
    private PartitionUsage? TakeQuota(string partition, long rounded)
    {
        if (partition.Length == 0)
        {
            return null;
        }

        long quota = PartitionQuota;
        while (true)
        {
            var usage = _partitionBytes.GetOrAdd(partition, static _ => new PartitionUsage());
            switch (usage.TryTake(rounded, quota, out long held))
            {
                case true:
                    return usage;
                case false:
                    throw new PoolException(PoolError.QuotaExceeded, $"Partition '{partition}' holds {held} bytes on {Device}; {rounded} more would pass its quota of {quota}.");
                default:
                    _partitionBytes.TryRemove(new KeyValuePair<string, PartitionUsage>(partition, usage)); // retired: help take it out, then take a new one
                    break;
            }
        }
    }

    /// <summary>Forgets the counters of partitions that hold nothing (from <see cref="Trim"/>): names come from clients, so the table must not only grow.</summary>
    private void ForgetIdlePartitions()
    {
        foreach (var (partition, usage) in _partitionBytes)
        {
            if (usage.TryRetire())
            {
                // Retired at zero: a racing allocation that fetched it fails to take on it and starts a new one.
                _partitionBytes.TryRemove(new KeyValuePair<string, PartitionUsage>(partition, usage));
            }
        }
    }

    /// <summary>
    /// The most one block can be: the smaller of the cap and the device's total memory, less what a
    /// slab adds by rounding up to whole MiB (a request whose slab could never be reserved never fits).
    /// </summary>
    private long MaxBlockBytes => Math.Min(_options.MaxBytes, Device.TotalMemory) & ~(SlabRounding - 1);

    /// <summary>
    /// The request rounded to the alignment, or <see cref="PoolError.TooLarge"/> at once when the pool
    /// could never hold it: compared before rounding, so no size near <see cref="long.MaxValue"/> can
    /// wrap to a negative that passes a later check.
    /// </summary>
    private long RoundOrThrowTooLarge(long bytes)
    {
        long max = MaxBlockBytes;
        if (bytes > max)
        {
            throw new PoolException(PoolError.TooLarge,
                $"A block of {bytes} bytes can never fit in the pool on {Device}: at most {max} bytes (cap {_options.MaxBytes}, device total {Device.TotalMemory}, in whole MiB).");
        }

        return ExtentAllocator.Round(bytes); // max is a multiple of 1 MiB: the rounded size is at most max
    }

    /// <summary>Records an arrival in the function's window, taking a new window if the pool just retired its old one.</summary>
    private FunctionWindow ArriveAt(string function, long rounded)
    {
        while (true)
        {
            var window = _functions.GetOrAdd(function, f => new FunctionWindow(f));
            if (window.TryArrive(rounded, Now))
            {
                return window;
            }

            _functions.TryRemove(new KeyValuePair<string, FunctionWindow>(function, window)); // retired by Trim: replace it
        }
    }

    /// <summary>Function windows held now (bounded: idle ones go in <see cref="Trim"/>).</summary>
    internal int FunctionWindowCount => _functions.Count;

    /// <summary>
    /// Marks a block never to be evicted again (data committed as long-lived after it was allocated).
    /// If it is being evicted or is evicted now, it comes back on its next use as usual and stays then.
    /// </summary>
    /// <param name="block">A live block of this pool.</param>
    /// <exception cref="PoolException">Foreign or freed block.</exception>
    internal void Pin(PoolBlock block)
    {
        CheckOwn(block);
        lock (block.Sync)
        {
            ThrowIfFreed(block);
            block.MarkPinned();
        }
    }

    /// <summary>Releases one lease of <paramref name="holder"/>; the block is freed at once when no lease and no use is left.</summary>
    /// <param name="block">A block of this pool.</param>
    /// <param name="holder">The holder whose lease goes.</param>
    /// <exception cref="PoolException">Foreign block, freed block (<see cref="PoolError.Stale"/>), or a lease not held.</exception>
    public void Release(PoolBlock block, long holder)
    {
        CheckOwn(block);
        lock (block.Sync)
        {
            ThrowIfFreed(block);
            if (!block.Leases.TryRemoveOne(holder, out bool last))
            {
                throw new PoolException(PoolError.LeaseNotHeld, $"Holder {holder} holds no lease on {block}.");
            }

            if (last && _holders.TryGetValue(holder, out var held))
            {
                held.TryRemove(block.Id, out _);
            }

            FreeIfDeadLocked(block);
        }
    }

    /// <summary>Releases every lease <paramref name="holder"/> holds (a session closed, a process died); returns how many.</summary>
    /// <param name="holder">The holder.</param>
    public int ReleaseHolder(long holder)
    {
        if (!_holders.TryRemove(holder, out var held))
        {
            return 0;
        }

        int released = 0;
        foreach (var id in held.Keys)
        {
            if (_blocks.TryGetValue(id, out var block))
            {
                lock (block.Sync)
                {
                    if (!block.Freed && block.Leases.RemoveAll(holder) is int count and > 0)
                    {
                        released += count;
                        FreeIfDeadLocked(block);
                    }
                }
            }
        }

        return released;
    }

    /// <summary>The block a descriptor names, validated against the pool's own tables (pool, block, slab, generation, bounds).</summary>
    /// <param name="descriptor">A descriptor, possibly forged.</param>
    /// <exception cref="PoolException">Foreign, stale or out of bounds.</exception>
    public PoolBlock Resolve(BlockDescriptor descriptor)
    {
        ThrowIfDisposed();
        if (descriptor.PoolId != Id)
        {
            throw new PoolException(PoolError.Foreign, $"The descriptor belongs to pool {descriptor.PoolId}, not {Id}.");
        }

        if (!_blocks.TryGetValue(descriptor.BlockId, out var block))
        {
            throw new PoolException(PoolError.Stale, $"Block {descriptor.BlockId} does not exist (freed, or never made).");
        }

        lock (block.Sync)
        {
            ThrowIfFreed(block);
            if (block.Slab is not { } slab || slab.Id != descriptor.SlabId || slab.Generation != descriptor.Generation)
            {
                throw new PoolException(PoolError.Stale, $"{block} is not in slab {descriptor.SlabId} generation {descriptor.Generation} (moved, evicted, or an old slab).");
            }

            if (descriptor.Offset != block.Offset || descriptor.Length <= 0 || descriptor.Length > block.Length)
            {
                throw new PoolException(PoolError.OutOfBounds, $"[{descriptor.Offset}, +{descriptor.Length}) is not within {block} at offset {block.Offset}.");
            }
        }

        return block;
    }

    internal void AddLease(PoolBlock block, long holder)
    {
        CheckOwn(block);
        lock (block.Sync)
        {
            ThrowIfFreed(block);
            block.Leases.Add(holder);
            HolderIndex(holder).TryAdd(block.Id, 0);
        }
    }

    internal async ValueTask<BlockUse> UseAsync(PoolBlock block, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        CheckOwn(block);
        return TryBeginUse(block) ?? await RestoreForUseAsync(block, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A use of a resident block, or null when it must be restored first.</summary>
    private BlockUse? TryBeginUse(PoolBlock block)
    {
        lock (block.Sync)
        {
            ThrowIfFreed(block);
            if (block.Slab is not { } slab || block.IsMoving)
            {
                return null;
            }

            block.Uses++;
            block.LastUse = _time.GetTimestamp();
            return new BlockUse(block, slab.Buffer.Slice(block.Offset, block.Length),
                new BlockDescriptor(Id, block.Id, slab.Id, slab.Generation, block.Offset, block.Length));
        }
    }

    internal void EndUse(PoolBlock block)
    {
        lock (block.Sync)
        {
            block.Uses--;
            block.LastUse = _time.GetTimestamp();
            FreeIfDeadLocked(block);
        }

        SignalMemoryChange(); // the block may be evictable now
    }

    /// <summary>Frees a block with no lease and no use left: its device range or spill entry goes back at once.</summary>
    private void FreeIfDeadLocked(PoolBlock block)
    {
        if (block.Freed || block.Uses > 0 || block.Leases.Holders > 0)
        {
            return;
        }

        block.Freed = true;
        _blocks.TryRemove(block.Id, out _);
        block.Usage?.Give(block.Rounded);
        block.Window.Depart();
        if (!block.IsMoving)
        {
            ReleaseStorageLocked(block);
        }

        SignalMemoryChange();
        if (_options.ProactiveRestore)
        {
            ScheduleProactiveRestore();
        }
    }

    /// <summary>Gives back what a freed block holds (device range, spill entry).</summary>
    private void ReleaseStorageLocked(PoolBlock block)
    {
        if (block.Slab is { } slab)
        {
            slab.Free(block.Offset, block.Rounded, Now);
            Interlocked.Add(ref _inUse, -block.Rounded);
            block.Slab = null;
        }

        block.Spill?.Dispose();
        block.Spill = null;
    }

    private ConcurrentDictionary<long, byte> HolderIndex(long holder) => _holders.GetOrAdd(holder, _ => new ConcurrentDictionary<long, byte>());

    private void CheckOwn(PoolBlock block)
    {
        ArgumentNullException.ThrowIfNull(block);
        if (block.Pool != this)
        {
            throw new PoolException(PoolError.Foreign, $"{block} belongs to another pool.");
        }
    }

    private static void ThrowIfFreed(PoolBlock block)
    {
        if (block.Freed)
        {
            throw new PoolException(PoolError.Stale, $"{block} was freed (its last lease was released).");
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    /// <summary>Frees every slab and spill entry; blocks still held become stale.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _metrics.Unregister(this);
        _trimTimer?.Dispose();

        // Evictions and restores copy outside the pressure gate: let those in flight end before their
        // slabs and spill entries go (no new one starts once disposed). Bounded: they are device copies.
        SpinWait.SpinUntil(() => Volatile.Read(ref _movesInFlight) == 0, TimeSpan.FromSeconds(30));
        foreach (var block in _blocks.Values)
        {
            lock (block.Sync)
            {
                block.Freed = true;
                block.Spill?.Dispose();
                block.Spill = null;
                block.Slab = null;
            }
        }

        _blocks.Clear();
        lock (_growLock)
        {
            foreach (var slab in _slabs)
            {
                if (slab is not null)
                {
                    slab.State = SlabState.Freed;
                    slab.Buffer.Dispose();
                }
            }

            _slabs = [];
        }

        foreach (var stream in _streams.Where(s => s.IsValueCreated))
        {
            stream.Value.Dispose();
        }

        _spill.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"pool {Id:N} on {Device}";
}
