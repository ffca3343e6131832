namespace FaaSTube.Channels.Names;

/// <summary>
/// The node's names: (scope, name) to the current version and the load in progress. A scope is a
/// workflow's own or a namespace the node's policy (<see cref="TubeNodeOptions.AuthorizeNamespace"/>)
/// grants the workflow, asked on every call; a namespace not granted is <see cref="TubeError.NotFound"/>,
/// exactly as a name that does not exist (no existence oracle). Each scope holds at most
/// <see cref="TubeNodeOptions.MaxNamesPerScope"/> names, loads in progress included, so no client
/// can grow the node's memory with names. A load not committed within <c>loadTimeout</c>
/// (<see cref="TubeNodeOptions.LoadTimeout"/>, on the node's clock) fails as a loader's failure does,
/// so a live loader that hangs keeps no name stuck; its late commit is refused. One lock for everything:
/// each operation is a few lookups.
/// </summary>
internal sealed class NameDirectory(Func<string, string, bool>? authorizeNamespace, int maxNamesPerScope, TimeSpan loadTimeout, TimeProvider time)
{
    private readonly Lock _sync = new();
    private readonly Dictionary<NameKey, NamedObject> _names = [];
    private readonly Dictionary<string, int> _perScope = new(StringComparer.Ordinal);

    /// <summary>Raised as a Get begins to wait for a load in progress (on the waiting request's thread; tests count the waiters with it).</summary>
    public event Action<NameKey>? WaiterArrived;

    /// <summary>Raised when a load timed out (<see cref="TubeNodeOptions.LoadTimeout"/>), before its waiters are woken (tests wait on it).</summary>
    public event Action<NameKey>? LoadTimedOut;

    /// <summary>Raises <see cref="WaiterArrived"/>.</summary>
    public void OnWaiting(NameKey key) => WaiterArrived?.Invoke(key);

    /// <summary>The key of <paramref name="name"/> in <paramref name="ns"/> (empty: the workflow's own scope) for <paramref name="workflow"/>; BadRequest for a malformed name, NotFound for a namespace not granted.</summary>
    public NameKey Resolve(string workflow, string ns, string name)
    {
        NameKey.Check(name, "name");
        if (ns.Length == 0)
        {
            return new NameKey(workflow, name);
        }

        NameKey.Check(ns, "namespace");
        return authorizeNamespace is { } granted && granted(workflow, ns)
            ? new NameKey(NameKey.NamespacePrefix + ns, name)
            : throw NotFound(name);
    }

    /// <summary>The name's state for a Get: found (counted), a load to wait for, this session made its loader (with <paramref name="load"/>), or NotFound.</summary>
    public (NamedGetResult Result, DataEntry? Entry, long Version, Task? Pending) Lookup(NameKey key, long session, bool load)
    {
        lock (_sync)
        {
            if (_names.TryGetValue(key, out var named))
            {
                if (named.Current is { } current)
                {
                    named.Requests++;
                    return (NamedGetResult.Found, current, named.Version, null);
                }

                if (named.Loading is { } loading)
                {
                    return (NamedGetResult.Pending, null, 0, loading.Done.Task);
                }
            }

            if (!load)
            {
                throw NotFound(key.Name);
            }

            named ??= Add(key);
            var started = new PendingLoad(session, time.GetTimestamp());
            named.Loading = started;
            started.Timer = time.CreateTimer(_ => TimedOut(key, started), null, loadTimeout, Timeout.InfiniteTimeSpan);
            return (NamedGetResult.Load, null, 0, null);
        }
    }

    /// <summary>Whether <paramref name="key"/> has a version here, or a load running (then it is not fetched from a peer).</summary>
    public bool Has(NameKey key)
    {
        lock (_sync)
        {
            return _names.TryGetValue(key, out var named) && (named.Current is not null || named.Loading is not null);
        }
    }

    /// <summary>Refuses a Put of a new name into a full scope before any memory is taken (the commit checks again).</summary>
    public void CheckRoom(NameKey key)
    {
        lock (_sync)
        {
            if (!_names.ContainsKey(key))
            {
                CheckRoomLocked(key.Scope);
            }
        }
    }

    /// <summary>The load of <paramref name="key"/> that <paramref name="session"/> runs now, if any (a named Put started by its loader belongs to it).</summary>
    public PendingLoad? LoadOf(NameKey key, long session)
    {
        lock (_sync)
        {
            return _names.TryGetValue(key, out var named) && named.Loading is { } l && l.Session == session ? l : null;
        }
    }

    /// <summary>
    /// Makes <paramref name="entry"/> the name's current version: the load in progress completes, and the
    /// version before is returned for the caller to take out of the directory (its readers keep it).
    /// A Put begun by a loader (<paramref name="load"/>) whose load failed since (timed out, deleted) is
    /// refused with <see cref="TubeError.LoadFailed"/>: its waiters were told it failed, and another may load now.
    /// </summary>
    public (long Version, DataEntry? Previous) Commit(NameKey key, DataEntry entry, TimeSpan loadTime, PendingLoad? load = null)
    {
        PendingLoad? loading;
        DataEntry? previous;
        long version;
        lock (_sync)
        {
            ThrowIfFailed(key, load);
            var named = _names.GetValueOrDefault(key) ?? Add(key);
            previous = named.Current;
            named.Current = entry;
            version = ++named.Version;
            named.LoadTime = loadTime;
            loading = named.Loading;
            named.Loading = null;
        }

        loading?.Timer?.Dispose();
        loading?.Done.TrySetResult();
        return (version, previous);
    }

    /// <summary>Refuses (<see cref="TubeError.LoadFailed"/>) a commit of a load that failed since (timed out, deleted), before the commit changes anything.</summary>
    public void EnsureLive(NameKey key, PendingLoad? load)
    {
        lock (_sync)
        {
            ThrowIfFailed(key, load);
        }
    }

    private static void ThrowIfFailed(NameKey key, PendingLoad? load)
    {
        if (load is { Failure: { } failure })
        {
            throw new TubeException(TubeError.LoadFailed, $"This load of '{key.Name}' was failed before its commit ({failure}); the version is dropped: ask again.");
        }
    }

    /// <summary>The load of <paramref name="key"/> by <paramref name="session"/> failed: its waiters get <paramref name="message"/>, the next caller loads. False when that session loads no such name.</summary>
    public bool Fail(NameKey key, long session, string message)
    {
        PendingLoad? loading;
        lock (_sync)
        {
            if (!_names.TryGetValue(key, out var named) || named.Loading is not { } l || l.Session != session)
            {
                return false;
            }

            loading = l;
            named.Loading = null;
            l.Failure = "its loader failed";
            RemoveIfEmpty(named);
        }

        loading.Timer?.Dispose();
        loading.Done.TrySetException(new TubeException(TubeError.LoadFailed, message));
        return true;
    }

    /// <summary>The load's timer fired: unless it ended first, it fails as if its loader had (waiters wake with LoadFailed, the next caller loads).</summary>
    private void TimedOut(NameKey key, PendingLoad load)
    {
        lock (_sync)
        {
            if (!_names.TryGetValue(key, out var named) || !ReferenceEquals(named.Loading, load))
            {
                return;
            }

            named.Loading = null;
            load.Failure = $"not committed within the node's LoadTimeout of {loadTimeout}";
            RemoveIfEmpty(named);
        }

        load.Timer?.Dispose();
        LoadTimedOut?.Invoke(key);
        load.Done.TrySetException(new TubeException(TubeError.LoadFailed, $"The load of '{key.Name}' was not committed within {loadTimeout} (the node's LoadTimeout); ask again to load it."));
    }

    /// <summary>A session ended: every load it had in progress fails (a loader killed mid-load leaves no name stuck).</summary>
    public int SessionEnded(long session)
    {
        List<PendingLoad> failed = [];
        lock (_sync)
        {
            foreach (var named in _names.Values.Where(n => n.Loading?.Session == session).ToList())
            {
                var loading = named.Loading!;
                loading.Failure = "its loader's connection ended";
                failed.Add(loading);
                named.Loading = null;
                RemoveIfEmpty(named);
            }
        }

        foreach (var loading in failed)
        {
            loading.Timer?.Dispose();
            loading.Done.TrySetException(new TubeException(TubeError.LoadFailed, "The loader's connection ended before its load was committed; ask again to load it."));
        }

        return failed.Count;
    }

    /// <summary>Forgets <paramref name="entry"/> if it is still <paramref name="key"/>'s current version (the cache dropped it); the name goes with it.</summary>
    public bool ForgetIfCurrent(NameKey key, DataEntry entry)
    {
        lock (_sync)
        {
            if (!_names.TryGetValue(key, out var named) || !ReferenceEquals(named.Current, entry))
            {
                return false;
            }

            named.Current = null;
            RemoveIfEmpty(named);
            return true;
        }
    }

    /// <summary>The current version and its number; NotFound when there is none.</summary>
    public (DataEntry Entry, long Version) Current(NameKey key)
    {
        lock (_sync)
        {
            return _names.TryGetValue(key, out var named) && named.Current is { } current ? (current, named.Version) : throw NotFound(key.Name);
        }
    }

    /// <summary>Removes the name; returns its current version for the caller to take out of the directory (NotFound when there is none). A load in progress fails.</summary>
    public DataEntry Delete(NameKey key)
    {
        NamedObject named;
        lock (_sync)
        {
            if (!_names.TryGetValue(key, out named!) || named.Current is null)
            {
                throw NotFound(key.Name);
            }

            _names.Remove(key);
            Count(key.Scope, -1);
            if (named.Loading is { } l)
            {
                l.Failure = "its name was deleted";
            }
        }

        named.Loading?.Timer?.Dispose();
        named.Loading?.Done.TrySetException(new TubeException(TubeError.LoadFailed, $"'{key.Name}' was deleted during its load."));
        return named.Current;
    }

    /// <summary>Every name's current version (for the node's stop and the cache's statistics).</summary>
    public List<NamedObject> Snapshot()
    {
        lock (_sync)
        {
            return [.. _names.Values];
        }
    }

    /// <summary>How many names <paramref name="scope"/> holds.</summary>
    public int CountIn(string scope)
    {
        lock (_sync)
        {
            return _perScope.GetValueOrDefault(scope);
        }
    }

    private NamedObject Add(NameKey key)
    {
        CheckRoomLocked(key.Scope);
        var named = new NamedObject(key);
        _names.Add(key, named);
        Count(key.Scope, +1);
        return named;
    }

    private void CheckRoomLocked(string scope)
    {
        if (_perScope.GetValueOrDefault(scope) >= maxNamesPerScope)
        {
            throw new TubeException(TubeError.BadRequest, $"This scope holds {maxNamesPerScope} names, the most the node allows; delete some first.");
        }
    }

    private void RemoveIfEmpty(NamedObject named)
    {
        if (named.Current is null && named.Loading is null && _names.Remove(named.Key))
        {
            Count(named.Key.Scope, -1);
        }
    }

    private void Count(string scope, int delta)
    {
        int count = _perScope.GetValueOrDefault(scope) + delta;
        if (count == 0)
        {
            _perScope.Remove(scope);
        }
        else
        {
            _perScope[scope] = count;
        }
    }

    private static TubeException NotFound(string name) => new(TubeError.NotFound, $"No object named '{name}' in this scope.");
}

/// <summary>What <see cref="NameDirectory.Lookup"/> found.</summary>
internal enum NamedGetResult
{
    Found,
    Pending,
    Load,
}
