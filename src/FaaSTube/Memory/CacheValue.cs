namespace FaaSTube.Memory;

/// <summary>
/// What keeping a cacheable block (a named object the node caches, src/FaaSTube/Channels/Names) on the
/// GPU is worth, for <see cref="EvictionOrder"/>: how often it is asked for, times what a reload
/// costs (its size over the host link, or its loader's measured time when that is longer), per byte
/// it holds. The request count decays with time (<see cref="CacheDecay"/>: each request's weight halves
/// every half-life), so a model hot an hour ago but cold now loses to one hot now. Cacheable blocks go
/// before any other block (intermediate data of running workflows wins), the least valuable first; to
/// host memory first, dropped (<see cref="Drop"/>) only when there is nowhere to spill. Thread-safe.
/// </summary>
internal sealed class CacheValue
{
    private readonly CacheValue? _counted;
    private readonly CacheDecay _decay;
    private readonly Lock _sync = new();
    private double _requests = 1; // its first Put counts once
    private long _stamp;
    private int _dropped;

    /// <param name="reloadSeconds">Seconds to bring the data back.</param>
    /// <param name="decay">How requests lose weight with time.</param>
    /// <param name="counted">Where requests are counted (a replica counts its primary's).</param>
    public CacheValue(double reloadSeconds, CacheDecay decay, CacheValue? counted = null)
    {
        ReloadSeconds = reloadSeconds;
        _decay = decay;
        _counted = counted;
        _stamp = decay.Time.GetTimestamp();
    }

    /// <summary>Where requests are counted: a replica counts its primary's (a model asked for is asked for on every GPU that has it).</summary>
    private CacheValue Root => _counted ?? this;

    /// <summary>Seconds to bring the data back if it were gone.</summary>
    public double ReloadSeconds { get; }

    /// <summary>The requests it was asked for, each weighted by its age (1 for a request now, 1/2 one half-life ago); its first Put counts once.</summary>
    public double Requests
    {
        get
        {
            var root = Root;
            lock (root._sync)
            {
                return root.DecayedLocked(_decay.Time.GetTimestamp());
            }
        }
    }

    /// <summary>
    /// Forgets the cached object (its owner takes it out and lets its lease go, freeing the block):
    /// what the pool asks when the block is the next victim and there is nowhere to spill it (host
    /// memory and spill files full), or when its scope's cache is over its bound. Run once.
    /// </summary>
    public Action? Drop { get; set; }

    /// <summary>Claims the one drop; false if it was claimed before or there is no <see cref="Drop"/>.</summary>
    public bool TryClaimDrop() => Drop is not null && Interlocked.Exchange(ref _dropped, 1) == 0;

    /// <summary>Counts one request (now).</summary>
    public void Hit()
    {
        var root = Root;
        long now = _decay.Time.GetTimestamp();
        lock (root._sync)
        {
            root._requests = root.DecayedLocked(now) + 1;
            root._stamp = Math.Max(now, root._stamp);
        }
    }

    /// <summary>Reload seconds saved per byte kept: (decayed) requests x reload cost / bytes; the lower, the sooner it goes.</summary>
    public double Per(long bytes) => Requests * ReloadSeconds / Math.Max(1, bytes);

    /// <summary>A replica's value: requests counted with this one's, a reload of <paramref name="bytes"/> over a host link of <paramref name="hostLinkBytesPerSecond"/> (the most a peer copy from the primary costs).</summary>
    public CacheValue ForReplica(long bytes, double hostLinkBytesPerSecond) => new(bytes / Math.Max(1, hostLinkBytesPerSecond), _decay, Root);

    /// <summary>The reload cost of <paramref name="bytes"/> over a host link of <paramref name="hostLinkBytesPerSecond"/>, or <paramref name="loadTime"/> when that is longer.</summary>
    public static CacheValue For(long bytes, double hostLinkBytesPerSecond, TimeSpan loadTime, CacheDecay decay) =>
        new(Math.Max(bytes / Math.Max(1, hostLinkBytesPerSecond), loadTime.TotalSeconds), decay);

    private double DecayedLocked(long now)
    {
        if (_decay.HalfLife is not { } halfLife || now <= _stamp)
        {
            return _requests;
        }

        double halfLives = _decay.Time.GetElapsedTime(_stamp, now).Ticks / (double)halfLife.Ticks;
        return _requests * Math.Pow(2, -halfLives);
    }
}

/// <summary>How a <see cref="CacheValue"/>'s requests lose weight: each halves every <see cref="HalfLife"/> on <see cref="Time"/> (null: never).</summary>
/// <param name="Time">The clock (the composition root's, src/FaaSTube/Hosting/FaaSTubeServices.cs).</param>
/// <param name="HalfLife">The half-life; null: requests never lose weight.</param>
internal readonly record struct CacheDecay(TimeProvider Time, TimeSpan? HalfLife)
{
    /// <summary>No decay, on the system clock (a pool's own tests).</summary>
    public static CacheDecay None => new(TimeProvider.System, null);
}
