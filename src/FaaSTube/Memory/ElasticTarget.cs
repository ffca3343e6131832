using System.Collections.Concurrent;

namespace FaaSTube.Memory;

/// <summary>
/// The pool's elastic sizing rule: each function's recent arrivals (<see cref="FunctionArrivals"/>),
/// and what they want reserved now, the sum over active functions of p99 size x p99 concurrency,
/// at least the floor. Function names come from clients, so idle functions are dropped
/// (<see cref="Prune"/>): the table must not only grow.
/// </summary>
internal sealed class ElasticTarget(GpuPoolOptions options)
{
    private readonly ConcurrentDictionary<string, FunctionArrivals> _functions = new();

    /// <summary>Functions whose arrivals are kept now.</summary>
    public int Count => _functions.Count;

    /// <summary>Records an arrival of <paramref name="rounded"/> bytes for <paramref name="function"/>, taking fresh arrivals if <see cref="Prune"/> just retired its old ones.</summary>
    public FunctionArrivals Arrive(string function, long rounded, TimeSpan now)
    {
        while (true)
        {
            var arrivals = _functions.GetOrAdd(function, f => new FunctionArrivals(f));
            if (arrivals.TryArrive(rounded, now))
            {
                return arrivals;
            }

            _functions.TryRemove(new KeyValuePair<string, FunctionArrivals>(function, arrivals)); // retired by Prune: replace them
        }
    }

    /// <summary>What the rule wants reserved at <paramref name="now"/>.</summary>
    public long Bytes(TimeSpan now)
    {
        long sum = 0;
        foreach (var arrivals in _functions.Values)
        {
            var (reservation, active) = arrivals.Evaluate(now, options.StatisticsPeriod, options.MinIdleTime);
            sum += active ? reservation : 0;
        }

        return Math.Max(options.FloorBytes, sum);
    }

    /// <summary>
    /// Drops the arrivals of functions with no live block whose last arrival is older than the
    /// statistics period: they add nothing to the target (no recent sample). An arrival racing with
    /// the drop takes fresh arrivals (<see cref="FunctionArrivals.TryArrive"/>).
    /// </summary>
    public void Prune(TimeSpan now)
    {
        foreach (var entry in _functions)
        {
            if (entry.Value.TryRetire(now, options.StatisticsPeriod))
            {
                _functions.TryRemove(entry);
            }
        }
    }
}
