namespace FaaSTube.Memory;

/// <summary>
/// Which block to evict first (the paper's rule, not LRU): data needed furthest in the future goes
/// first. A block's <see cref="PoolBlock.NextUse"/> hint is its consumer's position in the request
/// queue (or an expected use time): larger is later. A block with no hint has no known consumer
/// soon and goes before any hinted block; among equals (no hints, or equal hints) the least
/// recently used goes first. Blocks in use, pinned, or not resident are never candidates.
/// </summary>
internal sealed class EvictionOrder : IComparer<EvictionOrder.Candidate>
{
    public static readonly EvictionOrder Instance = new();

    public int Compare(Candidate x, Candidate y)
    {
        if (x.NextUse != y.NextUse)
        {
            if (x.NextUse is null)
            {
                return -1;
            }

            if (y.NextUse is null)
            {
                return 1;
            }

            return y.NextUse.Value.CompareTo(x.NextUse.Value); // furthest first
        }

        return x.LastUse.CompareTo(y.LastUse); // least recently used first
    }

    /// <summary>A block's eviction keys, read once.</summary>
    public readonly record struct Candidate(PoolBlock Block, double? NextUse, long LastUse);
}
