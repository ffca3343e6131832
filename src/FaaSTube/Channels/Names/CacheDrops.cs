using FaaSTube.Memory;

namespace FaaSTube.Channels.Names;

/// <summary>
/// What the node does when the pool drops a cached object (<see cref="CacheValue.Drop"/>: the block
/// was the next victim and there was nowhere to spill it): a version is forgotten, if it is still its
/// name's current one (the next GetOrLoad loads it again); a replica is taken off its entry. Either way
/// the directory's lease goes, and the block is freed unless a reader still holds it.
/// </summary>
internal static class CacheDrops
{
    public static void Version(NameDirectory names, DataDirectory directory, NameKey key, DataEntry entry)
    {
        if (names.ForgetIfCurrent(key, entry))
        {
            directory.Remove(entry);
        }
    }

    public static void Replica(DataEntry entry, int device, PoolBlock copy)
    {
        lock (entry.Sync)
        {
            if (entry.Removed || !entry.Replicas.TryGetValue(device, out var kept) || !ReferenceEquals(kept, copy))
            {
                return; // the entry went, and its replicas with it
            }

            entry.Replicas.Remove(device);
        }

        try
        {
            copy.Pool.Release(copy, DataEntry.DirectoryHolder);
        }
        catch (PoolException e) when (e.Error is PoolError.LeaseNotHeld or PoolError.Stale)
        {
            // Given back already.
        }
    }
}
