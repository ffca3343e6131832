namespace FaaSTube.Memory;

/// <summary>
/// Sliding-window statistics of one function's allocations (the paper's elastic sizing): request
/// sizes, concurrency (its live blocks at each arrival) and inter-arrival times over the last
/// <see cref="GpuPoolOptions.StatisticsWindow"/>, at most <see cref="Capacity"/> samples.
/// Reservation = p99 size x p99 concurrency; the function is active while a request arrived within
/// max(min idle window, p99 inter-arrival).
/// </summary>
internal sealed class FunctionWindow(string function)
{
    public const int Capacity = 1024;

    private readonly Lock _lock = new();
    private readonly Sample[] _samples = new Sample[Capacity];
    private int _next;
    private int _count;
    private long _live;
    private TimeSpan _lastArrival = TimeSpan.MinValue;

    public string Function { get; } = function;

    public long Live => Interlocked.Read(ref _live);

    public void Arrive(long bytes, TimeSpan now)
    {
        long concurrency = Interlocked.Increment(ref _live);
        lock (_lock)
        {
            var gap = _lastArrival == TimeSpan.MinValue ? TimeSpan.Zero : now - _lastArrival;
            _samples[_next] = new Sample(now, bytes, concurrency, gap);
            _next = (_next + 1) % Capacity;
            _count = Math.Min(_count + 1, Capacity);
            _lastArrival = now;
        }
    }

    public void Depart() => Interlocked.Decrement(ref _live);

    /// <summary>The function's reservation now, and whether its window is still active.</summary>
    public (long Reservation, bool Active) Evaluate(TimeSpan now, TimeSpan window, TimeSpan minIdle)
    {
        lock (_lock)
        {
            var recent = new List<Sample>(_count);
            for (int i = 0; i < _count; i++)
            {
                var s = _samples[(_next - 1 - i + Capacity) % Capacity];
                if (now - s.Time > window)
                {
                    break; // samples are in arrival order: the rest are older
                }

                recent.Add(s);
            }

            if (recent.Count == 0)
            {
                return (0, false);
            }

            long size = P99(recent.Select(s => s.Bytes));
            long concurrency = P99(recent.Select(s => s.Concurrency));
            var gaps = recent.Skip(1).Select(s => s.Gap.Ticks).Append(recent[0].Gap.Ticks);
            var idle = TimeSpan.FromTicks(Math.Max(minIdle.Ticks, P99(gaps)));
            return (size * concurrency, now - _lastArrival <= idle);
        }
    }

    /// <summary>The 99th percentile (nearest rank).</summary>
    internal static long P99(IEnumerable<long> values)
    {
        var sorted = values.ToArray();
        if (sorted.Length == 0)
        {
            return 0;
        }

        Array.Sort(sorted);
        int rank = (int)Math.Ceiling(0.99 * sorted.Length) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Length - 1)];
    }

    private readonly record struct Sample(TimeSpan Time, long Bytes, long Concurrency, TimeSpan Gap);
}
