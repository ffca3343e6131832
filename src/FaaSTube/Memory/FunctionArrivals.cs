namespace FaaSTube.Memory;

/// <summary>
/// The recent allocations of one function (the paper's elastic sizing): request sizes, concurrency
/// (its live blocks at each arrival) and inter-arrival times over the last
/// <see cref="GpuPoolOptions.StatisticsPeriod"/>, at most <see cref="Capacity"/> samples.
/// Reservation = p99 size x p99 concurrency; the function is active while a request arrived within
/// max(<see cref="GpuPoolOptions.MinIdleTime"/>, p99 inter-arrival).
/// <para>Names come from untrusted clients, so a function's arrivals cost little until used (the
/// sample buffer grows on demand) and the pool drops them once it is idle (<see cref="TryRetire"/>).</para>
/// </summary>
internal sealed class FunctionArrivals(string function)
{
    public const int Capacity = 1024;
    private const int InitialCapacity = 4;

    private readonly Lock _lock = new();
    private Sample[] _samples = new Sample[InitialCapacity];
    private int _next;
    private int _count;
    private long _live;
    private bool _retired;
    private TimeSpan _lastArrival = TimeSpan.MinValue;

    public string Function { get; } = function;

    public long Live => Interlocked.Read(ref _live);

    /// <summary>Records an arrival; false (nothing recorded) when these arrivals were retired: take new ones.</summary>
    public bool TryArrive(long bytes, TimeSpan now)
    {
        lock (_lock)
        {
            if (_retired)
            {
                return false;
            }

            long concurrency = Interlocked.Increment(ref _live);
            if (_count == _samples.Length && _samples.Length < Capacity)
            {
                Array.Resize(ref _samples, Math.Min(Capacity, _samples.Length * 2)); // full and never wrapped: order is kept
            }

            var gap = _lastArrival == TimeSpan.MinValue ? TimeSpan.Zero : now - _lastArrival;
            _samples[_next] = new Sample(now, bytes, concurrency, gap);
            _next = _samples.Length == Capacity ? (_next + 1) % Capacity : _next + 1; // below Capacity it grows instead of wrapping
            _count = Math.Min(_count + 1, _samples.Length);
            _lastArrival = now;
            return true;
        }
    }

    /// <summary>
    /// Retires the function's arrivals when it has no live block and its last arrival is older than
    /// <paramref name="period"/>: they then contribute nothing to the target (no sample is recent), so
    /// dropping them changes no reservation. Retired arrivals take no more arrivals.
    /// </summary>
    public bool TryRetire(TimeSpan now, TimeSpan period)
    {
        lock (_lock)
        {
            if (!_retired && Live == 0 && (_lastArrival == TimeSpan.MinValue || now - _lastArrival > period))
            {
                _retired = true;
            }

            return _retired;
        }
    }

    public void Depart() => Interlocked.Decrement(ref _live);

    /// <summary>The function's reservation now (from the samples of the last <paramref name="period"/>), and whether it is still active.</summary>
    public (long Reservation, bool Active) Evaluate(TimeSpan now, TimeSpan period, TimeSpan minIdle)
    {
        lock (_lock)
        {
            var recent = new List<Sample>(_count);
            for (int i = 0; i < _count; i++)
            {
                var s = _samples[(_next - 1 - i + _samples.Length) % _samples.Length];
                if (now - s.Time > period)
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
