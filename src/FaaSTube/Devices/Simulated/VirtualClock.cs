namespace FaaSTube.Devices;

/// <summary>
/// Simulated time for timing tests: it moves only when modelled work completes or a test advances it,
/// so results are exact on any machine. Thread-safe; never goes backwards.
/// </summary>
public sealed class VirtualClock
{
    private long _ticks;

    /// <summary>The current simulated time since the clock was made.</summary>
    public TimeSpan Now => TimeSpan.FromTicks(Volatile.Read(ref _ticks));

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
