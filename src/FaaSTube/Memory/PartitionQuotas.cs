using System.Collections.Concurrent;

namespace FaaSTube.Memory;

/// <summary>
/// The bytes each partition holds in a pool against its quota (<see cref="GpuPoolOptions.MaxPartitionBytes"/>,
/// or half the device's memory). Partition "" (the pool's own staging) is not counted. Partition
/// names come from clients, so counters of partitions that hold nothing are forgotten (<see cref="ForgetIdle"/>).
/// </summary>
internal sealed class PartitionQuotas(long quota, string device)
{
    private readonly ConcurrentDictionary<string, PartitionUsage> _usage = new(StringComparer.Ordinal);

    /// <summary>
    /// Counts <paramref name="rounded"/> bytes against <paramref name="partition"/>'s quota and returns
    /// its counter (the block keeps it, so a free needs no lookup), or refuses with
    /// <see cref="PoolError.QuotaExceeded"/> at once. Null for partition "".
    /// </summary>
    public PartitionUsage? Take(string partition, long rounded)
    {
        if (partition.Length == 0)
        {
            return null;
        }

        while (true)
        {
            var usage = _usage.GetOrAdd(partition, static _ => new PartitionUsage());
            switch (usage.TryTake(rounded, quota, out long held))
            {
                case true:
                    return usage;
                case false:
                    throw new PoolException(PoolError.QuotaExceeded, $"Partition '{partition}' holds {held} bytes on {device}; {rounded} more would pass its quota of {quota}.");
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
