using System.Collections.Concurrent;
using FaaSTube.Devices;
using FaaSTube.Hosting;
using Microsoft.Extensions.Logging;

namespace FaaSTube.Memory;

/// <summary>
/// The elastic GPU memory pool of one device: intermediate data that functions pass to each other.
/// It takes memory from the device in slabs and sub-allocates blocks from them (best fit, 256-byte
/// aligned, per-slab locks: no global lock on the common path); grows up to its cap; gives empty
/// slabs back when the functions that needed them go idle (<see cref="Trim"/>); and under pressure
/// evicts the blocks needed furthest in the future to host memory or files, restoring them on use.
/// A block is never lost: if nothing can give, an allocation waits, then fails with
/// <see cref="PoolError.OutOfMemory"/> naming what holds the memory.
/// <para>Each concern lives in its own class: the slabs and what they hold (<see cref="SlabSet"/>),
/// moving blocks to the spill store and back (<see cref="BlockMover"/>), the elastic target
/// (<see cref="ElasticTarget"/>), partition quotas (<see cref="PartitionQuotas"/>) and the counts that
/// statistics and the meter read (<see cref="PoolCounters"/>). The pool's files tie them together:
/// this one allocation, leases and uses; <c>.Pressure</c> making room (place, grow, evict, restore);
/// <c>.Elastic</c> trimming, importers and statistics.</para>
/// <para>Partitions (<see cref="BlockOptions.Partition"/>): a slab serves one partition for its whole
/// life and is cleared on the device before its first block, so nothing a client maps can hold
/// another partition's bytes; memory moves between partitions only by freeing an empty slab.</para>
/// </summary>
public sealed partial class GpuMemoryPool : IAsyncDisposable
{
    private static readonly BlockOptions DefaultBlock = new();

    private readonly GpuPoolOptions _options;
    private readonly PoolMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly long _start;
    private readonly ConcurrentDictionary<long, PoolBlock> _blocks = new();
    private readonly ConcurrentDictionary<LeaseHolder, ConcurrentDictionary<long, byte>> _holders = new();
    private readonly SlabSet _slabs;
    private readonly BlockMover _mover;
    private readonly SpillStore _spill;
    private readonly ElasticTarget _target;
    private readonly PartitionQuotas _quotas;
    private readonly PartitionQuotas _cacheQuotas;
    private readonly PoolCounters _counters;
    private readonly ArenaCounters _arena = new();
    private long _nextBlockId;
    private int _disposed;

    /// <summary>Creates an empty pool on <paramref name="device"/> (memory is taken on first use).</summary>
    /// <param name="device">The device whose memory it holds.</param>
    /// <param name="options">Sizing and elasticity; null for the defaults.</param>
    public GpuMemoryPool(GpuDevice device, GpuPoolOptions? options = null)
        : this(device, options, FaaSTubeServices.Default)
    {
    }

    /// <summary>A pool with its clock and logger from the node's services (<c>src/FaaSTube/Hosting/FaaSTubeServices.cs</c>).</summary>
    internal GpuMemoryPool(GpuDevice device, GpuPoolOptions? options, FaaSTubeServices services)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(services);
        _options = options ?? new GpuPoolOptions();
        _options.Validate();
        Device = device;
        Services = services;
        _time = services.TimeProvider;
        _logger = services.Logger<GpuMemoryPool>();
        _start = _time.GetTimestamp();
        _spill = new SpillStore(device, _options);
        _metrics = PoolMetrics.For(services.MeterFactory);
        _counters = new PoolCounters(_metrics, PoolMetrics.Tag(this));
        _slabs = new SlabSet(device, _options, () => Now, _logger);
        _slabs.SlabFreed += (slab, generation) => SlabFreed?.Invoke(slab, generation);
        _mover = new BlockMover(device, _spill, _counters, () => Now, SignalMemoryChange, _logger);
        _target = new ElasticTarget(_options);
        _quotas = new PartitionQuotas(_options.MaxPartitionBytes ?? device.TotalMemory / 2, device.ToString());
        _cacheQuotas = new PartitionQuotas(_options.MaxPartitionCacheBytes ?? _quotas.Quota, device.ToString(), "cache bound");
        _metrics.Register(this);
    }

    /// <summary>The logger factory, meter factory and clock the pool runs with.</summary>
    internal FaaSTubeServices Services { get; }

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
    public ValueTask<PoolBlock> AllocateAsync(long bytes, BlockOptions? options = null, CancellationToken cancellationToken = default) =>
        AllocateCoreAsync(bytes, options, range: false, cancellationToken);

    /// <summary>An allocation, or (<paramref name="range"/>) an arena range: never evicted, no function's arrival, its pieces carved by <see cref="Carve"/>.</summary>
    private async ValueTask<PoolBlock> AllocateCoreAsync(long bytes, BlockOptions? options, bool range, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        options ??= DefaultBlock;
        ArgumentNullException.ThrowIfNull(options.Function, nameof(options.Function));
        ArgumentNullException.ThrowIfNull(options.Partition, nameof(options.Partition));
        long rounded = RoundOrThrowTooLarge(bytes); // before any state is touched
        var usage = options.CacheEntry ? TakeCache(options.Partition, rounded) : _quotas.Take(options.Partition, rounded);
        FunctionArrivals arrivals;
        try
        {
            arrivals = range ? RangeArrivals(rounded) : _target.Arrive(options.Function, rounded, Now);
        }
        catch
        {
            usage?.Give(rounded);
            throw;
        }

        var block = new PoolBlock(this, Interlocked.Increment(ref _nextBlockId), bytes, rounded, options, arrivals) { Usage = usage, InCache = options.CacheEntry };
        try
        {
            if (_slabs.TryPlace(rounded, block.Partition, out var slab, out long offset))
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
            arrivals.Depart();
            usage?.Give(rounded);
            throw;
        }

        if (range)
        {
            block.Carving = new CarvedRange(block.Slab!, block.Offset, rounded, usage, _arena); // placed, never evicted: its place is for good
            block.Usage = null; // the range charges the quota (CarvedRange)
        }

        block.LastUse = _time.GetTimestamp();
        _blocks[block.Id] = block;
        HolderIndex(options.Holder).TryAdd(block.Id, 0);
        _counters.Allocated();
        return block;
    }

    /// <summary>
    /// The most one block can be: the smaller of the cap and the device's total memory, less what a
    /// slab adds by rounding up to whole MiB (a request whose slab could never be reserved never fits).
    /// </summary>
    private long MaxBlockBytes => Math.Min(_options.MaxBytes, Device.TotalMemory) & ~(SlabSet.Rounding - 1);

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

    /// <summary>Functions whose arrivals the elastic target keeps now (bounded: idle ones go in <see cref="Trim"/>).</summary>
    internal int FunctionCount => _target.Count;

    /// <summary>
    /// Marks a block never to be evicted again (data committed as long-lived after it was allocated).
    /// If it is being evicted or is evicted now, it comes back on its next use as usual and stays then.
    /// </summary>
    /// <param name="block">A live block of this pool.</param>
    /// <exception cref="PoolException">Foreign or freed block.</exception>
    internal void ExemptFromEviction(PoolBlock block)
    {
        CheckOwn(block);
        lock (block.Sync)
        {
            ThrowIfFreed(block);
            block.MarkNeverEvict();
        }
    }

    /// <summary>Releases one lease of <paramref name="holder"/>; the block is freed at once when no lease and no use is left.</summary>
    /// <param name="block">A block of this pool.</param>
    /// <param name="holder">The holder whose lease goes.</param>
    /// <exception cref="PoolException">Foreign block, freed block (<see cref="PoolError.Stale"/>), or a lease not held.</exception>
    internal void Release(PoolBlock block, LeaseHolder holder)
    {
        CheckOwn(block);
        lock (block.Sync)
        {
            ThrowIfFreed(block);
            if (!block.Leases.TryRemoveOne(holder, out bool last))
            {
                throw new PoolException(PoolError.LeaseNotHeld, $"{holder} holds no lease on {block}.");
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
    internal int ReleaseHolder(LeaseHolder holder)
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
    internal PoolBlock Resolve(BlockDescriptor descriptor)
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

    internal void AddLease(PoolBlock block, LeaseHolder holder)
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
        block.Arrivals.Depart();
        if (!block.IsMoving)
        {
            block.ReleaseStorageLocked(Now); // a move in flight gives it back when it ends (BlockMover.RunAsync)
        }

        SignalMemoryChange();
        if (_options.ProactiveRestore)
        {
            ScheduleProactiveRestore();
        }
    }

    private ConcurrentDictionary<long, byte> HolderIndex(LeaseHolder holder) => _holders.GetOrAdd(holder, _ => new ConcurrentDictionary<long, byte>());

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

    /// <summary>Frees every slab and spill entry once the evictions and restores in flight have ended (awaited, no thread blocked); blocks still held become stale.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!BeginDispose())
        {
            return;
        }

        _mover.StopStarting();
        using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(30), _time);
        while (!patience.IsCancellationRequested)
        {
            var changed = Volatile.Read(ref _memoryChanged).Task; // each move's end signals it
            if (_mover.InFlight == 0)
            {
                break;
            }

            await changed.WaitAsync(patience.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        FreeAll();
    }

    private bool BeginDispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return false;
        }

        _metrics.Unregister(this);
        lock (_slabs.Sync)
        {
            _trimTimer?.Dispose(); // under the slab set's lock: no slab added after this starts it again
            _trimTimer = null;
        }

        return true;
    }

    /// <summary>Starts the trim timer with the first slab: an empty pool has nothing to trim, and the constructor starts nothing.</summary>
    private void StartTrimTimerOnce()
    {
        if (Volatile.Read(ref _trimTimer) is not null || _options.TrimInterval is not { } interval)
        {
            return;
        }

        lock (_slabs.Sync)
        {
            if (_trimTimer is null && Volatile.Read(ref _disposed) == 0)
            {
                _trimTimer = _time.CreateTimer(_ => TrimQuietly(), null, interval, interval);
            }
        }
    }

    private void FreeAll()
    {
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
        _slabs.FreeAll();
        _mover.Dispose();
        _spill.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"pool {Id:N} on {Device}";
}
