using FaaSTube.Transfers;

namespace FaaSTube.Tests.Transfers;

/// <summary>
/// Drives a <see cref="BandwidthPolicy"/> the way a lane's executor does, under virtual time: at each
/// batch boundary the transfers that have arrived join, the policy plans a batch, and its chunks
/// occupy the link one after another (chunk bytes / capacity each). Exact and instant.
/// </summary>
internal sealed class LaneSimulation(BandwidthPolicy policy, double capacity)
{
    public sealed record Job(long Id, string Tenant, long Bytes, TimeSpan Arrival, TimeSpan? TransferDeadline = null, int Priority = 0)
    {
        public long Remaining { get; set; } = Bytes;

        public TimeSpan? Finished { get; set; }

        public long BytesBy(TimeSpan t, List<(TimeSpan End, long Id, long Bytes)> log) => log.Where(l => l.Id == Id && l.End <= t).Sum(l => l.Bytes);
    }

    public List<(TimeSpan End, long Id, long Bytes)> Log { get; } = [];

    public List<BatchPlan> Plans { get; } = [];

    public TimeSpan Busy { get; private set; }

    /// <summary>Runs until every job is done; returns the time the last one finished.</summary>
    public TimeSpan Run(IReadOnlyList<Job> jobs)
    {
        var now = TimeSpan.Zero;
        while (jobs.Any(j => j.Finished is null))
        {
            var active = jobs.Where(j => j.Arrival <= now && j.Remaining > 0).ToList();
            if (active.Count == 0)
            {
                now = jobs.Where(j => j.Finished is null).Min(j => j.Arrival); // idle until the next arrival
                continue;
            }

            var plan = policy.Plan(active.Select(j => new TransferDemand(j.Id, j.Tenant, j.Remaining, j.TransferDeadline, j.Priority, j.Arrival)).ToList(), capacity, now);
            Plans.Add(plan);
            foreach (var (id, chunks) in plan.Chunks)
            {
                var job = jobs.Single(j => j.Id == id);
                for (int c = 0; c < chunks && job.Remaining > 0; c++)
                {
                    long bytes = Math.Min(policy.ChunkBytes, job.Remaining);
                    var took = TimeSpan.FromSeconds(bytes / capacity);
                    now += took;
                    Busy += took;
                    job.Remaining -= bytes;
                    Log.Add((now, id, bytes));
                    if (job.Remaining == 0)
                    {
                        job.Finished = now;
                    }
                }
            }
        }

        return now;
    }
}
