namespace FaaSTube.Memory;

/// <summary>
/// Which block to evict first (the paper's rule, not LRU): data needed furthest in the future goes
/// first. A block's <see cref="PoolBlock.NextUse"/> hint is its consumer's position in the request
/// queue (or an expected use time): larger is later. A block with no hint has no known consumer
/// soon and goes before any hinted block; among equals (no hints, or equal hints) the least
/// recently used goes first. Blocks in use, marked never to be evicted, or not resident are never candidates.
/// <para>Cacheable blocks (<see cref="PoolBlock.Cache"/>: named objects the node caches) go before every
/// other block, so a cache never makes intermediate data of a running workflow leave the GPU while a
/// cached object could; among them the least valuable goes first (<see cref="CacheValue.Per"/>: requests x
/// reload cost / bytes), not the least recent.</para>
/// </summary>
internal sealed class EvictionOrder : IComparer<EvictionOrder.Candidate>
{
    public static readonly EvictionOrder Instance = new();

    public int Compare(Candidate x, Candidate y)
    {
        if (x.Value is { } xv)
        {
            return y.Value is { } yv ? xv != yv ? xv.CompareTo(yv) : x.LastUse.CompareTo(y.LastUse) : -1; // cached objects first, least valuable first
        }

        if (y.Value is not null)
        {
            return 1;
        }

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

    /// <summary>
    /// The block to evict next, or null. Blocks in the asker's own partition come first (evicting them
    /// frees room it can use), by this order. Another partition's block only helps when
    /// its slab empties and can be freed, so those victims come from one slab at a time: the one with
    /// the fewest bytes in use whose blocks can all go (no importer first), best block by
    /// this order within it. Never an in-use, never-evict, moving or non-resident block.
    /// </summary>
    public static PoolBlock? NextVictim(IEnumerable<PoolBlock> blocks, string partition, bool ownOnly)
    {
        Candidate? own = null;
        var others = new Dictionary<Slab, (Candidate? Best, bool Stuck, bool Cached)>();
        foreach (var block in blocks)
        {
            Candidate candidate;
            Slab slab;
            bool evictable;
            lock (block.Sync)
            {
                if (block.Slab is null || block.Freed)
                {
                    continue;
                }

                slab = block.Slab;
                evictable = !block.IsMoving && block.Uses == 0 && !block.Unevictable;
                candidate = new Candidate(block, block.NextUse, block.LastUse, block.Cache?.Per(block.Rounded));
            }

            if (string.Equals(slab.Partition, partition, StringComparison.Ordinal))
            {
                if (evictable && (own is null || Instance.Compare(candidate, own.Value) < 0))
                {
                    own = candidate;
                }
            }
            else if (!ownOnly)
            {
                var (best, stuck, cached) = others.TryGetValue(slab, out var seen) ? seen : (null, false, true);
                cached &= candidate.Value is not null;
                if (!evictable)
                {
                    stuck = true;
                }
                else if (best is null || Instance.Compare(candidate, best.Value) < 0)
                {
                    best = candidate;
                }

                others[slab] = (best, stuck, cached);
            }
        }

        var other = others
            .Where(e => !e.Value.Stuck && e.Value.Best is not null)
            .OrderBy(e => e.Key.HasImporters)
            .ThenBy(e => !e.Value.Cached) // a slab of cached objects only before one holding intermediate data
            .ThenBy(e => e.Key.Capacity - e.Key.FreeBytes)
            .ThenBy(e => e.Value.Best!.Value, Instance)
            .Select(e => (e.Value.Best!.Value.Block, e.Value.Cached))
            .FirstOrDefault();

        // The asker's own block first, unless it is intermediate data and another partition's slab
        // can be emptied of cached objects alone (a namespace's models): the cache gives way first.
        if (own is { } mine && (mine.Value is not null || other.Block is null || !other.Cached))
        {
            return mine.Block;
        }

        return other.Block;
    }

    /// <summary>A block's eviction keys, read once; <see cref="Value"/> only for a cacheable block.</summary>
    public readonly record struct Candidate(PoolBlock Block, double? NextUse, long LastUse, double? Value = null);
}
