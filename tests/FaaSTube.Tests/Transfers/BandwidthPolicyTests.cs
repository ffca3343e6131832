using FaaSTube.Transfers;
using static FaaSTube.Tests.Transfers.LaneSimulation;

namespace FaaSTube.Tests.Transfers;

[TestClass]
public sealed class BandwidthPolicyTests
{
    private const long MiB = 1 << 20;
    private const double Link = 50e9; // bytes per second
    private static readonly TimeSpan Ms = TimeSpan.FromMilliseconds(1);

    [TestMethod]
    public void A_tight_deadline_is_met_beside_a_bulk_transfer_and_the_link_never_idles()
    {
        var policy = new BandwidthPolicy(2 * MiB);
        var sim = new LaneSimulation(policy, Link);
        var bulk = new Job(1, "bulk", 1L << 30, TimeSpan.Zero);
        var smalls = Enumerable.Range(0, 8).Select(i => new Job(10 + i, "urgent", 8 * MiB, i * 2 * Ms + Ms, i * 2 * Ms + 3 * Ms)).ToList();

        var end = sim.Run([bulk, .. smalls]);

        foreach (var s in smalls)
        {
            Assert.IsLessThanOrEqualTo(s.TransferDeadline!.Value, s.Finished!.Value, $"transfer {s.Id} missed its deadline");
        }

        double total = (bulk.Bytes + smalls.Sum(s => s.Bytes)) / Link;
        Assert.AreEqual(end, sim.Busy, "work-conserving: the link was busy the whole time");
        Assert.AreEqual(total, end.TotalSeconds, sim.Log.Count * 1e-7, "done when all the bytes have crossed the link (within a 100 ns tick per chunk)");
    }

    [TestMethod]
    public void First_come_first_served_would_miss_the_same_deadlines()
    {
        // The baseline: one tenant, no deadlines known, so chunks go in arrival order.
        var sim = new LaneSimulation(new BandwidthPolicy(2 * MiB), Link);
        var bulk = new Job(1, "all", 1L << 30, TimeSpan.Zero);
        var small = new Job(2, "all", 8 * MiB, Ms);

        sim.Run([bulk, small]);

        Assert.IsGreaterThan(3 * Ms, small.Finished!.Value, "behind a 1 GiB transfer, FCFS finishes the small one after ~21 ms");
    }

    [TestMethod]
    public void Without_deadlines_tenants_share_equally_however_many_transfers_each_has()
    {
        var sim = new LaneSimulation(new BandwidthPolicy(MiB), Link);
        var many = Enumerable.Range(0, 100).Select(i => new Job(i, "many", 8 * MiB, TimeSpan.Zero)).ToList();
        var one = new Job(1000, "one", 400 * MiB, TimeSpan.Zero);

        sim.Run([.. many, one]);

        var half = TimeSpan.FromSeconds(400 * MiB / Link);
        long oneBytes = one.BytesBy(half, sim.Log);
        long manyBytes = many.Sum(j => j.BytesBy(half, sim.Log));
        Assert.AreEqual(0.5, (double)oneBytes / (oneBytes + manyBytes), 0.02, "tenant 'one' gets half the link, not 1/101");
    }

    [TestMethod]
    public void Batches_hold_the_configured_number_of_chunks_and_newcomers_wait_for_the_next()
    {
        var policy = new BandwidthPolicy(MiB, batchChunks: 5);
        var first = policy.Plan([new TransferDemand(1, "a", 100 * MiB, null, 0, TimeSpan.Zero)], Link, TimeSpan.Zero);
        Assert.AreEqual(5, first.Chunks.Sum(c => c.Chunks));

        var next = policy.Plan(
            [new TransferDemand(1, "a", 95 * MiB, null, 0, TimeSpan.Zero), new TransferDemand(2, "b", 10 * MiB, null, 0, Ms)], Link, Ms);
        Assert.AreEqual(5, next.Chunks.Sum(c => c.Chunks));
        Assert.IsTrue(next.Chunks.Any(c => c.Id == 2), "a transfer that joined is served from the next batch on");

        var tail = policy.Plan([new TransferDemand(2, "b", MiB + 1, null, 0, Ms)], Link, 2 * Ms);
        Assert.AreEqual(2, tail.Chunks.Single().Chunks, "no more chunks than the transfer has left");
    }

    [TestMethod]
    public void Least_rates_are_granted_and_the_remainder_goes_to_the_least_slack()
    {
        var policy = new BandwidthPolicy(MiB);
        var relaxed = new TransferDemand(1, "a", 10_000_000, TimeSpan.FromSeconds(1), 0, TimeSpan.Zero); // needs 10 MB/s
        var tight = new TransferDemand(2, "b", 10_000_000, TimeSpan.FromMilliseconds(10), 0, TimeSpan.Zero); // needs 1 GB/s

        var plan = policy.Plan([relaxed, tight], Link, TimeSpan.Zero);

        Assert.IsFalse(plan.Oversubscribed);
        Assert.AreEqual(1e7, plan.Rates[1], 1);
        Assert.AreEqual(Link - 1e7, plan.Rates[2], 1, "least rate plus all the idle bandwidth");
    }

    [TestMethod]
    public void Oversubscription_is_reported_and_degrades_by_priority()
    {
        var policy = new BandwidthPolicy(MiB);
        var low = new TransferDemand(1, "a", 1_000_000_000, TimeSpan.FromMilliseconds(25), 0, TimeSpan.Zero); // 40 GB/s
        var high = new TransferDemand(2, "b", 500_000_000, TimeSpan.FromMilliseconds(25), 5, TimeSpan.Zero); // 20 GB/s

        var plan = policy.Plan([low, high], Link, TimeSpan.Zero);

        Assert.IsTrue(plan.Oversubscribed);
        Assert.AreEqual(20e9, plan.Rates[2], 1, "the high priority keeps its least rate");
        Assert.AreEqual(30e9, plan.Rates[1], 1, "the low priority gets what is left");
        CollectionAssert.AreEqual(new long[] { 1 }, plan.Degraded.ToArray());
    }

    [TestMethod]
    public void The_same_inputs_give_the_same_plan()
    {
        TransferDemand[] demands =
        [
            new(1, "a", 64 * MiB, null, 0, TimeSpan.Zero),
            new(2, "b", 32 * MiB, TimeSpan.FromMilliseconds(5), 0, TimeSpan.Zero),
            new(3, "a", 16 * MiB, TimeSpan.FromMilliseconds(50), 1, Ms),
        ];

        var a = new BandwidthPolicy(MiB).Plan(demands, Link, Ms);
        var b = new BandwidthPolicy(MiB).Plan(demands, Link, Ms);

        CollectionAssert.AreEqual(a.Chunks.ToArray(), b.Chunks.ToArray());
    }
}
