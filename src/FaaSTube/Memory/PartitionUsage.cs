namespace FaaSTube.Memory;

/// <summary>The bytes one partition holds in a pool, resident and evicted (its quota's counter).</summary>
internal sealed class PartitionUsage
{
    private long _bytes;

    public long Bytes => Volatile.Read(ref _bytes);

    /// <summary>Adds <paramref name="bytes"/>; returns the new total.</summary>
    public long Take(long bytes) => Interlocked.Add(ref _bytes, bytes);

    public void Give(long bytes) => Interlocked.Add(ref _bytes, -bytes);
}
