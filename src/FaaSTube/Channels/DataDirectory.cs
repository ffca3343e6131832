using System.Collections.Concurrent;
using FaaSTube.Memory;

namespace FaaSTube.Channels;

/// <summary>
/// The node's directory: every id by (workflow, id), so an id of another workflow is simply not
/// found (no existence oracle). An entry is registered unfinished (its producer's), committed by a
/// Put's commit or a Publish, and removed once: by its last consumer, its TTL, a Delete, or its
/// producer's end. Removing drops the directory's leases; the blocks go when no session holds them.
/// </summary>
internal sealed class DataDirectory(TimeProvider time)
{
    private readonly ConcurrentDictionary<(string Workflow, TubeId Id), DataEntry> _entries = new();
    private long _registered;

    public DataEntry Register(DataEntry entry)
    {
        entry.Registered = time.GetUtcNow();
        entry.Sequence = Interlocked.Increment(ref _registered);
        _entries[(entry.Workflow, entry.Id)] = entry;
        return entry;
    }

    /// <summary>Registers an entry under an id a client drew (an arena carve); false, and nothing registered, when the id is taken in its workflow.</summary>
    public bool TryRegister(DataEntry entry)
    {
        entry.Registered = time.GetUtcNow();
        entry.Sequence = Interlocked.Increment(ref _registered);
        return _entries.TryAdd((entry.Workflow, entry.Id), entry);
    }

    /// <summary>The committed entry of <paramref name="id"/> in <paramref name="workflow"/> (or <paramref name="session"/>'s own unfinished one); else <see cref="TubeError.NotFound"/>.</summary>
    public DataEntry Find(string workflow, TubeId id, long session = -1) =>
        _entries.TryGetValue((workflow, id), out var e) && (e.Committed || e.OwnerSession == session)
            ? e
            : throw new TubeException(TubeError.NotFound, $"No data {id} in workflow '{workflow}'.");

    /// <summary>
    /// The committed entry of <paramref name="id"/>; one that is allocated but not yet published is
    /// waited for, up to <paramref name="wait"/> (then, or when it is dropped, <see cref="TubeError.NotFound"/>).
    /// </summary>
    public async ValueTask<DataEntry> FindPublishedAsync(string workflow, TubeId id, TimeSpan wait, CancellationToken cancellationToken)
    {
        if (!_entries.TryGetValue((workflow, id), out var entry) || entry.Committed || wait <= TimeSpan.Zero)
        {
            return Find(workflow, id);
        }

        try
        {
            await entry.Settled.Task.WaitAsync(wait, time, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new TubeException(TubeError.NotFound, $"{id} was not published within {wait.TotalSeconds:0.###} s.");
        }

        return Find(workflow, id);
    }

    /// <summary>The entry, committed or not, if there is one.</summary>
    public DataEntry? TryFind(string workflow, TubeId id) => _entries.GetValueOrDefault((workflow, id));

    /// <summary>Every entry, committed or not, as the dictionary enumerates it (no copy: the admin status reads it in one pass).</summary>
    public IEnumerable<DataEntry> All => _entries.Values;

    /// <summary>The unfinished Puts and Allocates of <paramref name="session"/>.</summary>
    public List<DataEntry> UnfinishedOf(long session) => _entries.Values.Where(e => e.OwnerSession == session && !e.Committed).ToList();

    /// <summary>Committed entries whose TTL has passed at <paramref name="now"/>.</summary>
    public List<DataEntry> ExpiredAt(TimeSpan now) => _entries.Values.Where(e => e.Committed && e.ExpiresAt is { } at && at <= now).ToList();

    /// <summary>Takes an entry out (once: false if it was already) and drops the directory's leases; Gets waiting for it end with NotFound.</summary>
    public bool Remove(DataEntry entry)
    {
        lock (entry.Sync)
        {
            if (entry.Removed)
            {
                return false;
            }

            entry.Removed = true;
            _entries.TryRemove(new KeyValuePair<(string, TubeId), DataEntry>((entry.Workflow, entry.Id), entry));
            foreach (var block in entry.Blocks())
            {
                if (!block.IsFreed && block.LeaseCount > 0)
                {
                    try
                    {
                        block.Pool.Release(block, entry.Committed ? DataEntry.DirectoryHolder : new LeaseHolder(entry.OwnerSession));
                    }
                    catch (PoolException e) when (e.Error is PoolError.LeaseNotHeld or PoolError.Stale)
                    {
                        // Already given back by the session's end.
                    }
                }
            }
        }

        entry.Settled.TrySetResult(); // outside the lock: waiting Gets go on in place (DataEntry.Settled)
        return true;
    }
}
