namespace FaaSTube.Memory;

/// <summary>
/// What keeping a cacheable block (a named object the node caches, src/FaaSTube/Channels/Names) on the
/// GPU is worth, for <see cref="EvictionOrder"/>: how often it is asked for, times what a reload
/// costs (its size over the host link, or its loader's measured time when that is longer), per byte
/// it holds. Cacheable blocks go before any other block (intermediate data of running workflows wins),
/// the least valuable first; to host memory first, dropped (<see cref="Drop"/>) only when there is nowhere
/// to spill. Thread-safe.
/// </summary>
internal sealed class CacheValue(double reloadSeconds, CacheValue? counted = null)
{
    private long _requests;

    /// <summary>Where requests are counted: a replica counts its primary's (a model asked for is asked for on every GPU that has it).</summary>
    private CacheValue Root => counted ?? this;

    /// <summary>Seconds to bring the data back if it were gone.</summary>
    public double ReloadSeconds { get; } = reloadSeconds;

    /// <summary>Times it was asked for (its first Put counts once).</summary>
    public long Requests => Volatile.Read(ref Root._requests) + 1;

    private int _dropped;

    /// <summary>
    /// Forgets the cached object (its owner takes it out and lets its lease go, freeing the block):
    /// what the pool asks when the block is the next victim and there is nowhere to spill it (host
    /// memory and spill files full). Run on the thread pool, once.
    /// </summary>
    public Action? Drop { get; set; }

    /// <summary>Claims the one drop; false if it was claimed before or there is no <see cref="Drop"/>.</summary>
    public bool TryClaimDrop() => Drop is not null && Interlocked.Exchange(ref _dropped, 1) == 0;

    /// <summary>Counts one request.</summary>
    public void Hit() => Interlocked.Increment(ref Root._requests);

    /// <summary>Reload seconds saved per byte kept: requests x reload cost / bytes; the lower, the sooner it goes.</summary>
    public double Per(long bytes) => Requests * ReloadSeconds / Math.Max(1, bytes);

    /// <summary>A replica's value: requests counted with this one's, a reload of <paramref name="bytes"/> over a host link of <paramref name="hostLinkBytesPerSecond"/> (the most a peer copy from the primary costs).</summary>
    public CacheValue ForReplica(long bytes, double hostLinkBytesPerSecond) => new(bytes / Math.Max(1, hostLinkBytesPerSecond), Root);

    /// <summary>The reload cost of <paramref name="bytes"/> over a host link of <paramref name="hostLinkBytesPerSecond"/>, or <paramref name="loadTime"/> when that is longer.</summary>
    public static CacheValue For(long bytes, double hostLinkBytesPerSecond, TimeSpan loadTime) =>
        new(Math.Max(bytes / Math.Max(1, hostLinkBytesPerSecond), loadTime.TotalSeconds));
}
