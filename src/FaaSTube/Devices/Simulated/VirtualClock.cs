namespace FaaSTube.Devices.Simulated;

/// <summary>
/// Simulated time for timing tests: it moves only when modelled work completes or a test advances it,
/// so results are exact on any machine. Thread-safe; never goes backwards. It is a
/// <see cref="TimeProvider"/>, so anything that takes one (the memory pool's windows, the scheduler)
/// runs on it too. Its timers are not virtual: components driven by it expose explicit steps instead.
/// </summary>
public sealed class VirtualClock : TimeProvider
{
    private static readonly DateTimeOffset Epoch = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private long _ticks;

    /// <summary>The current simulated time since the clock was made.</summary>
    public TimeSpan Now => TimeSpan.FromTicks(Volatile.Read(ref _ticks));

    /// <inheritdoc/>
    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    /// <inheritdoc/>
    public override long GetTimestamp() => Volatile.Read(ref _ticks);

    /// <inheritdoc/>
    public override DateTimeOffset GetUtcNow() => Epoch + Now;

    /// <summary>Moves the clock forward by <paramref name="delta"/>.</summary>
    /// <param name="delta">A non-negative duration.</param>
    public void Advance(TimeSpan delta)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(delta, TimeSpan.Zero);
        Interlocked.Add(ref _ticks, delta.Ticks);
    }

    /// <summary>Moves the clock to <paramref name="time"/> if that is later than now.</summary>
    /// <param name="time">The time reached.</param>
    public void AdvanceTo(TimeSpan time)
    {
        long current = Volatile.Read(ref _ticks);
        while (time.Ticks > current)
        {
            long seen = Interlocked.CompareExchange(ref _ticks, time.Ticks, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }
}
