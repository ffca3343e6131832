namespace FaaSTube.Memory;

/// <summary>Sizing, elasticity and spilling of a <see cref="GpuMemoryPool"/>. Defaults follow DESIGN.md section 3.</summary>
public sealed class GpuPoolOptions
{
    /// <summary>Size of each slab taken from the device (64 MiB - 1 GiB; default 256 MiB). A larger request gets a slab of its own size.</summary>
    public long SlabBytes { get; set; } = 256L << 20;

    /// <summary>The most the pool ever reserves from the device (default: unlimited, then only <see cref="MaxFreeMemoryFraction"/> bounds it).</summary>
    public long MaxBytes { get; set; } = long.MaxValue;

    /// <summary>
    /// The most one partition (a workflow, for the node) may hold at once, resident and evicted
    /// together; null (the default): half of the device's memory. Partition "" (the pool's own
    /// staging) is not limited. Keeps one tenant from taking the whole pool, never-evicted data included.
    /// </summary>
    public long? MaxPartitionBytes { get; set; }

    /// <summary>
    /// The most one partition's cache (cacheable named objects, model weights: blocks the node marks as
    /// cache entries) may hold at once, resident and evicted together; null (the default): as much as
    /// <see cref="MaxPartitionBytes"/>. Cached bytes are charged here, not to the partition's quota, so a
    /// workflow's cache never makes its own Puts fail; past this bound its least valuable cached objects
    /// are dropped. Bounds what a tenant can hold through the cache.
    /// </summary>
    public long? MaxPartitionCacheBytes { get; set; }

    /// <summary>A growth never takes more than this fraction of the device's free memory at the time (default 0.5).</summary>
    public double MaxFreeMemoryFraction { get; set; } = 0.5;

    /// <summary>Reserved memory kept even when idle (default 300 MB; 0 allowed).</summary>
    public long FloorBytes { get; set; } = 300_000_000;

    /// <summary>How far back per-function statistics reach: arrivals older than this are forgotten (default 60 s).</summary>
    public TimeSpan StatisticsPeriod { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// The least idle time: a function counts as active while a request arrived within
    /// max(this, its p99 inter-arrival time); an empty slab is returned after being empty this long (default 10 s).
    /// </summary>
    public TimeSpan MinIdleTime { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How often the pool trims itself in the background; null to trim only when <see cref="GpuMemoryPool.Trim"/> is called (default 5 s).</summary>
    public TimeSpan? TrimInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Host memory for evicted data (default 4 GiB); beyond it, files in <see cref="SpillDirectory"/>.</summary>
    public long HostSpillBytes { get; set; } = 4L << 30;

    /// <summary>Keep evicted data in pinned host memory (faster restores, costly to allocate) instead of pageable memory (default false).</summary>
    public bool PinnedSpill { get; set; }

    /// <summary>Folder for spill files once host memory is full (default: a folder under the temp folder).</summary>
    public string? SpillDirectory { get; set; }

    /// <summary>The most bytes the spill files may hold (default 64 GiB).</summary>
    public long MaxSpillFileBytes { get; set; } = 64L << 30;

    /// <summary>How long an allocation waits for memory when nothing can be evicted (default 10 s); then it fails with <see cref="PoolError.OutOfMemory"/>.</summary>
    public TimeSpan AllocationTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Restore evicted data in the background as soon as memory frees up (default true).</summary>
    public bool ProactiveRestore { get; set; } = true;

    /// <summary>
    /// Zero-fill every new slab on the device even where the backend already hands out zeroed memory
    /// (the simulated GPU): lets tests exercise the clearing path that CUDA always takes.
    /// </summary>
    internal bool AlwaysClearNewSlabs { get; set; }

    internal void Validate()
    {
        if (SlabBytes < (1L << 20) || SlabBytes % ExtentAllocator.Alignment != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(SlabBytes), SlabBytes, "A slab is at least 1 MiB and a multiple of 256 bytes (64 MiB - 1 GiB recommended).");
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxBytes);
        if (MaxPartitionBytes is { } quota)
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(quota, nameof(MaxPartitionBytes));
        }

        if (MaxPartitionCacheBytes is { } cacheQuota)
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cacheQuota, nameof(MaxPartitionCacheBytes));
        }

        if (MaxFreeMemoryFraction is <= 0 or > 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxFreeMemoryFraction), MaxFreeMemoryFraction, "The fraction is in (0, 1].");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(FloorBytes);
        ArgumentOutOfRangeException.ThrowIfNegative(HostSpillBytes);
        ArgumentOutOfRangeException.ThrowIfNegative(MaxSpillFileBytes);
    }

    /// <summary>A copy (what a node keeps from the moment it starts: later changes to this object do not reach it).</summary>
    internal GpuPoolOptions Clone() => (GpuPoolOptions)MemberwiseClone();
}
