namespace FaaSTube.Memory;

/// <summary>
/// The cache account: cacheable blocks (named objects the node caches, <see cref="PoolBlock.Cache"/>)
/// are charged to their partition's cache bound (<see cref="GpuPoolOptions.MaxPartitionCacheBytes"/>),
/// not to its quota, so a workflow's own cache never makes its Puts of intermediate data fail; the
/// cache's bytes are bounded all the same (resident and evicted), so no tenant holds more through it.
/// Past the bound the partition's least valuable cached objects are dropped (<see cref="CacheValue.Drop"/>)
/// until the new one fits.
/// </summary>
public sealed partial class GpuMemoryPool
{
    /// <summary>The bytes <paramref name="partition"/>'s cache holds (resident and evicted).</summary>
    internal long CachedBytes(string partition) => _cacheQuotas.Held(partition);

    /// <summary>The bytes <paramref name="partition"/> holds against its quota (its cache not included).</summary>
    internal long QuotaBytes(string partition) => _quotas.Held(partition);

    /// <summary>
    /// Charges <paramref name="block"/> (a committed cache entry, charged to its partition's quota while
    /// it was written) to the partition's cache instead, dropping the partition's least valuable cached
    /// objects if the cache bound needs room; <see cref="PoolError.QuotaExceeded"/> when even then it does
    /// not fit (readers still hold what was dropped), the block's charge unchanged.
    /// </summary>
    internal void MoveToCache(PoolBlock block)
    {
        CheckOwn(block);
        lock (block.Sync)
        {
            ThrowIfFreed(block);
            if (block.InCache || block.Usage is null)
            {
                return;
            }
        }

        var cache = TakeCache(block.Partition, block.Rounded);
        lock (block.Sync)
        {
            if (block.Freed || block.InCache)
            {
                cache?.Give(block.Rounded); // freed (or moved) meanwhile: nothing to charge
                return;
            }

            block.Usage?.Give(block.Rounded);
            block.Usage = cache;
            block.InCache = true;
        }
    }

    /// <summary>Takes <paramref name="rounded"/> bytes of <paramref name="partition"/>'s cache bound, dropping its least valuable cached objects until they fit.</summary>
    private PartitionUsage? TakeCache(string partition, long rounded)
    {
        if (_cacheQuotas.TryTake(partition, rounded, out var usage, out long held))
        {
            return usage;
        }

        if (rounded <= _cacheQuotas.Quota)
        {
            var victims = _blocks.Values
                .Where(b => b.Cache is not null && string.Equals(b.Partition, partition, StringComparison.Ordinal))
                .Select(b => (Block: b, Value: b.Cache!.Per(b.Rounded)))
                .OrderBy(v => v.Value)
                .Select(v => v.Block)
                .ToList();
            foreach (var victim in victims)
            {
                bool live;
                lock (victim.Sync)
                {
                    live = !victim.Freed && victim.InCache;
                }

                if (live && victim.Cache is { } cached && cached.TryClaimDrop())
                {
                    cached.Drop!(); // its owner forgets it: freed now unless a reader holds it
                }

                if (_cacheQuotas.TryTake(partition, rounded, out usage, out held))
                {
                    return usage;
                }
            }
        }

        throw new PoolException(PoolError.QuotaExceeded,
            $"The cache of partition '{partition}' holds {held} bytes on {Device} (objects readers still hold); {rounded} more would pass its bound of {_cacheQuotas.Quota} (MaxPartitionCacheBytes).");
    }
}
