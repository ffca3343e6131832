namespace FaaSTube.Memory;

/// <summary>
/// The pool's running counts (allocations, moves each way): recorded once, here, on the path that
/// does the work, and read by both <see cref="GpuMemoryPool.GetStatistics"/> and the <c>FaaSTube</c>
/// meter (<see cref="PoolMetrics"/>), so the snapshot and the instruments cannot disagree.
/// </summary>
internal sealed class PoolCounters(PoolMetrics metrics, KeyValuePair<string, object?> tag)
{
    private long _allocations, _evictions, _evictedBytes, _restores, _restoredBytes;

    public long Allocations => Interlocked.Read(ref _allocations);

    public long Evictions => Interlocked.Read(ref _evictions);

    public long EvictedBytes => Interlocked.Read(ref _evictedBytes);

    public long Restores => Interlocked.Read(ref _restores);

    public long RestoredBytes => Interlocked.Read(ref _restoredBytes);

    /// <summary>A block was allocated.</summary>
    public void Allocated()
    {
        Interlocked.Increment(ref _allocations);
        metrics.Allocations.Add(1, tag);
    }

    /// <summary>A block of <paramref name="bytes"/> was moved to the spill store or back to the device.</summary>
    public void Moved(MoveDirection direction, long bytes)
    {
        if (direction == MoveDirection.ToHost)
        {
            Interlocked.Increment(ref _evictions);
            Interlocked.Add(ref _evictedBytes, bytes);
            metrics.RecordMove(tag, bytes, evict: true);
        }
        else
        {
            Interlocked.Increment(ref _restores);
            Interlocked.Add(ref _restoredBytes, bytes);
            metrics.RecordMove(tag, bytes, evict: false);
        }
    }
}
