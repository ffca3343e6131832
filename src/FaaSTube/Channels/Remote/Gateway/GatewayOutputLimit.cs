using System.Threading.RateLimiting;

namespace FaaSTube.Channels.Remote.Gateway;

/// <summary>
/// How many of the gateway's output lines the node logs: at most <see cref="LinesPerSecond"/> a
/// second (a fixed window), the rest counted and reported with the next line logged. A peer that
/// floods the gateway with fragments UCX cannot take (<see cref="GatewayMemory"/>: at its memory
/// bound) makes UCX print three lines for each one, over a hundred thousand in 15 s on the development
/// VM (tests/FaaSTube.Tests/Channels/GatewayMemoryTests.cs); unbounded, the node would write them all
/// to its log. Thread-safe: the gateway's standard output and error are read by two tasks.
/// </summary>
internal sealed class GatewayOutputLimit : IDisposable
{
    /// <summary>The most lines logged in one second.</summary>
    public const int LinesPerSecond = 200;

    private readonly FixedWindowRateLimiter _limiter = new(new FixedWindowRateLimiterOptions
    {
        PermitLimit = LinesPerSecond,
        Window = TimeSpan.FromSeconds(1),
        QueueLimit = 0,
        AutoReplenishment = false, // replenished by Take once a window has passed: no timer
    });

    private long _dropped;

    /// <summary>Whether this line may be logged; when it may, <paramref name="dropped"/> is how many were not since the last one logged.</summary>
    public bool Take(out long dropped)
    {
        dropped = 0;
        RateLimitLease lease;
        try
        {
            _limiter.TryReplenish(); // a new window once the last one has passed, else nothing
            lease = _limiter.AttemptAcquire();
        }
        catch (ObjectDisposedException)
        {
            return true; // the node stops: the gateway's last lines are logged
        }

        using var held = lease;
        if (!lease.IsAcquired)
        {
            Interlocked.Increment(ref _dropped);
            return false;
        }

        dropped = Interlocked.Exchange(ref _dropped, 0);
        return true;
    }

    public void Dispose() => _limiter.Dispose();
}
