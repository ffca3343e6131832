using System.Collections.Concurrent;

namespace FaaSTube.Memory;

/// <summary>
/// The bytes each partition holds in a pool against its quota (<see cref="GpuPoolOptions.MaxPartitionBytes"/>,
/// or half the device's memory). Partition "" (the pool's own staging) is not counted. Partition
/// names come from clients, so counters of partitions that hold nothing are forgotten (<see cref="ForgetIdle"/>).
/// A pool keeps two: its partitions' intermediate data, and their caches (cacheable named objects,
/// <see cref="GpuPoolOptions.MaxPartitionCacheBytes"/>), so a cache never takes its own partition's quota.
/// </summary>
internal sealed class PartitionQuotas(long quota, string device, string what = "quota")
{
    /// <summary>The bound of each partition.</summary>
    public long Quota => quota;

    /// <summary>What <paramref name="partition"/> holds now.</summary>
    public long Held(string partition) => _usage.TryGetValue(partition, out var usage) ? usage.Bytes : 0;

    private readonly ConcurrentDictionary<string, PartitionUsage> _usage = new(StringComparer.Ordinal);

    /// <summary>
    /// Counts <paramref name="rounded"/> bytes against <paramref name="partition"/>'s quota and returns
    /// its counter (the block keeps it, so a free needs no lookup), or refuses with
    /// <see cref="PoolError.QuotaExceeded"/> at once. Null for partition "".
    /// </summary>
    public PartitionUsage? Take(string partition, long rounded) =>
        TryTake(partition, rounded, out var usage, out long held)
            ? usage
            : throw new PoolException(PoolError.QuotaExceeded, $"Partition '{partition}' holds {held} bytes on {device}; {rounded} more would pass its {what} of {quota}.");

    /// <summary>As <see cref="Take"/>, false instead of the refusal (with what the partition holds).</summary>
    public bool TryTake(string partition, long rounded, out PartitionUsage? taken, out long held)
    {
        held = 0;
        taken = null;
        if (partition.Length == 0)
        {
            return true;
        }

        while (true)
        {
            var usage = _usage.GetOrAdd(partition, static _ => new PartitionUsage());
            switch (usage.TryTake(rounded, quota, out held))
            {
                case true:
                    taken = usage;
                    return true;
                case false:
                    return false;
                default:
                    _usage.TryRemove(new KeyValuePair<string, PartitionUsage>(partition, usage)); // retired: help take it out, then take a new one
                    break;
            }
        }
    }

    /// <summary>Forgets the counters of partitions that hold nothing.</summary>
    public void ForgetIdle()
    {
        foreach (var (partition, usage) in _usage)
        {
            if (usage.TryRetire())
            {
                // Retired at zero: a racing allocation that fetched it fails to take on it and starts a new one.
                _usage.TryRemove(new KeyValuePair<string, PartitionUsage>(partition, usage));
            }
        }
    }
}
