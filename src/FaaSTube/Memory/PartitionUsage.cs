namespace FaaSTube.Memory;

/// <summary>
/// The bytes one partition holds in a pool, resident and evicted: its quota's counter. Taking is a
/// compare-and-swap against the quota (never over it, never refused when it fits); a counter at zero
/// can be retired for good, so the pool can forget idle partitions without a late allocation counting
/// on a counter nobody reads any more.
/// </summary>
internal sealed class PartitionUsage
{
    private const long Retired = -1;
    private long _bytes;

    public long Bytes => Math.Max(0, Volatile.Read(ref _bytes));

    /// <summary>Adds <paramref name="bytes"/> if the total stays within <paramref name="quota"/>; null when this counter is retired (take a new one).</summary>
    public bool? TryTake(long bytes, long quota, out long held)
    {
        while (true)
        {
            held = Volatile.Read(ref _bytes);
            if (held == Retired)
            {
                return null;
            }

            if (held + bytes > quota)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _bytes, held + bytes, held) == held)
            {
                return true;
            }
        }
    }

    public void Give(long bytes) => Interlocked.Add(ref _bytes, -bytes);

    /// <summary>Retires the counter if it holds nothing; true when it did (it never counts again).</summary>
    public bool TryRetire() => Interlocked.CompareExchange(ref _bytes, Retired, 0) == 0;
}
