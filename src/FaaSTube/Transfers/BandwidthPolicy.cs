namespace FaaSTube.Transfers;

/// <summary>One transfer as the policy sees it.</summary>
/// <param name="Id">Unique per lane.</param>
/// <param name="Tenant">Fair share is per tenant.</param>
/// <param name="RemainingBytes">Bytes not yet issued.</param>
/// <param name="TransferDeadline">When the transfer must be done (submission + SLO - compute), on the lane's clock; null: none.</param>
/// <param name="Priority">Higher keeps its least rate first when the link is oversubscribed.</param>
/// <param name="Arrival">Submission time: first come first served within a tenant.</param>
internal readonly record struct TransferDemand(long Id, string Tenant, long RemainingBytes, TimeSpan? TransferDeadline, int Priority, TimeSpan Arrival);

/// <summary>What the policy decided for the next batch.</summary>
/// <param name="Chunks">Transfer id -> chunks to issue in this batch, in issue order.</param>
/// <param name="Rates">Transfer id -> the rate (bytes/s) the policy assigned.</param>
/// <param name="Oversubscribed">True when the least rates together exceed the link.</param>
/// <param name="Degraded">Transfers given less than their least rate because of oversubscription.</param>
internal sealed record BatchPlan(IReadOnlyList<(long Id, int Chunks)> Chunks, IReadOnlyDictionary<long, double> Rates, bool Oversubscribed, IReadOnlyList<long> Degraded);

/// <summary>
/// The bandwidth-shaping policy of one link lane (FaaSTube's SLO-aware sharing), kept apart from
/// the copy engines so that it runs exactly under a virtual clock:
/// <list type="number">
/// <item>each transfer with a deadline needs <c>Rate_least = remaining / (deadline - now)</c>;</item>
/// <item>when the least rates fit in the link, each gets its least rate, and the idle remainder
/// goes to the deadline transfer with the least slack (earliest need); with no deadline transfer,
/// the remainder is shared equally between tenants (first come first served inside a tenant, so a
/// tenant with 100 transfers still gets one share);</item>
/// <item>when they do not fit, least rates are granted by priority (then earliest deadline) until the
/// link is used up: the rest are <see cref="BatchPlan.Degraded"/> and the plan says
/// <see cref="BatchPlan.Oversubscribed"/> (never a silent starvation);</item>
/// <item>rates become a batch of <see cref="BatchChunks"/> chunks by deficit round robin: each
/// transfer earns credit in proportion to its rate, and chunks go to the largest credits.</item>
/// </list>
/// Deterministic: the same demands, capacity and time give the same plan.
/// </summary>
internal sealed class BandwidthPolicy
{
    private readonly Dictionary<long, double> _credit = [];

    /// <summary>Creates a policy.</summary>
    /// <param name="chunkBytes">Bytes per chunk.</param>
    /// <param name="batchChunks">Chunks per batch (the paper uses 5); a new transfer joins at the next batch.</param>
    public BandwidthPolicy(long chunkBytes, int batchChunks = 5)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkBytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchChunks);
        ChunkBytes = chunkBytes;
        BatchChunks = batchChunks;
    }

    /// <summary>Bytes per chunk.</summary>
    public long ChunkBytes { get; }

    /// <summary>Chunks per batch.</summary>
    public int BatchChunks { get; }

    /// <summary>Plans the next batch.</summary>
    /// <param name="active">Transfers with bytes left to issue.</param>
    /// <param name="capacity">The lane's bandwidth, bytes per second.</param>
    /// <param name="now">The lane's clock.</param>
    public BatchPlan Plan(IReadOnlyList<TransferDemand> active, double capacity, TimeSpan now)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        foreach (var id in _credit.Keys.Where(id => !active.Any(a => a.Id == id)).ToList())
        {
            _credit.Remove(id); // finished transfers leave no credit behind
        }

        var rates = AssignRates(active, capacity, now, out bool oversubscribed, out var degraded);
        return new BatchPlan(ToChunks(active, rates), rates, oversubscribed, degraded);
    }

    /// <summary>Rate_least of a deadline transfer: what finishes it exactly at its deadline (infinite when it is due or past).</summary>
    public static double LeastRate(TransferDemand t, TimeSpan now)
    {
        if (t.TransferDeadline is not { } deadline)
        {
            return 0;
        }

        double seconds = (deadline - now).TotalSeconds;
        return seconds <= 0 ? double.PositiveInfinity : t.RemainingBytes / seconds;
    }

    private static Dictionary<long, double> AssignRates(IReadOnlyList<TransferDemand> active, double capacity, TimeSpan now, out bool oversubscribed, out List<long> degraded)
    {
        var rates = active.ToDictionary(t => t.Id, _ => 0.0);
        degraded = [];
        var timed = active.Where(t => t.TransferDeadline is not null).ToList();
        double sumLeast = timed.Sum(t => LeastRate(t, now));
        oversubscribed = sumLeast > capacity;
        double left = capacity;
        if (oversubscribed)
        {
            foreach (var t in timed.OrderByDescending(t => t.Priority).ThenBy(t => t.TransferDeadline).ThenBy(t => t.Arrival))
            {
                double give = Math.Min(LeastRate(t, now), left);
                rates[t.Id] = give;
                left -= give;
                if (give < LeastRate(t, now))
                {
                    degraded.Add(t.Id);
                }
            }

            return rates;
        }

        foreach (var t in timed)
        {
            rates[t.Id] = LeastRate(t, now);
            left -= rates[t.Id];
        }

        if (left <= 0)
        {
            return rates;
        }

        if (timed.Count > 0)
        {
            // Work-conserving: the idle remainder to the transfer with the least slack.
            var tightest = timed.OrderBy(t => Slack(t, capacity, now)).ThenBy(t => t.Arrival).First();
            rates[tightest.Id] += left;
            return rates;
        }

        // No deadlines: equal shares per tenant, first come first served inside a tenant.
        var heads = active.GroupBy(t => t.Tenant).Select(g => g.OrderBy(t => t.Arrival).ThenBy(t => t.Id).First()).ToList();
        foreach (var head in heads)
        {
            rates[head.Id] = left / heads.Count;
        }

        return rates;
    }

    /// <summary>Time to spare if the transfer had the whole link from now on.</summary>
    private static double Slack(TransferDemand t, double capacity, TimeSpan now) =>
        (t.TransferDeadline!.Value - now).TotalSeconds - t.RemainingBytes / capacity;

    private List<(long Id, int Chunks)> ToChunks(IReadOnlyList<TransferDemand> active, Dictionary<long, double> rates)
    {
        double total = rates.Values.Sum();
        var byId = active.ToDictionary(t => t.Id);
        var remainingChunks = active.ToDictionary(t => t.Id, t => (t.RemainingBytes + ChunkBytes - 1) / ChunkBytes);
        var grants = new Dictionary<long, int>();
        var order = new List<long>();
        for (int slot = 0; slot < BatchChunks; slot++)
        {
            if (total > 0)
            {
                foreach (var (id, rate) in rates)
                {
                    _credit[id] = _credit.GetValueOrDefault(id) + rate / total;
                }
            }

            bool HasChunks(long id) => remainingChunks[id] > grants.GetValueOrDefault(id);
            var pick = rates.Keys
                .Where(id => HasChunks(id) && rates[id] > 0)
                .OrderByDescending(id => _credit.GetValueOrDefault(id))
                .ThenBy(id => byId[id].Arrival)
                .ThenBy(id => id)
                .Select(id => (long?)id)
                .FirstOrDefault()
                // Work-conserving: when the rated transfers have no chunk left in this batch, the link
                // still does not idle; the others go in deadline, then arrival order.
                ?? rates.Keys
                .Where(HasChunks)
                .OrderBy(id => byId[id].TransferDeadline ?? TimeSpan.MaxValue)
                .ThenBy(id => byId[id].Arrival)
                .ThenBy(id => id)
                .Select(id => (long?)id)
                .FirstOrDefault();
            if (pick is not { } chosen)
            {
                break;
            }

            _credit[chosen] = _credit.GetValueOrDefault(chosen) - 1;
            grants[chosen] = grants.GetValueOrDefault(chosen) + 1;
            if (!order.Contains(chosen))
            {
                order.Add(chosen);
            }
        }

        return order.Select(id => (id, grants[id])).ToList();
    }
}
