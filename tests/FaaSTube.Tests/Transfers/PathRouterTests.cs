using FaaSTube.Tests.Support;
using FaaSTube.Topology;
using FaaSTube.Transfers;
using FaaSTube.Transfers.Routing;

namespace FaaSTube.Tests.Transfers;

[TestClass]
public sealed class PathRouterTests
{
    private const double GB = 1e9;

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void A_pair_without_nvlink_gets_multi_hop_routes_at_least_twice_the_pcie_fallback()
    {
        var router = new PathRouter(GpuTopology.Dgx1V100);

        using var flow = router.Route(0, 5);

        Assert.IsTrue(flow.Paths.All(p => p.Hops >= 2 && !p.ViaHost), string.Join("; ", flow.Paths));
        double fallback = GpuTopology.Dgx1V100.HostBytesPerSecond; // D2H then H2D, pipelined: one lane's speed
        TestContext.WriteLine($"0 -> 5: {flow.BytesPerSecond / GB:F0} GB/s over {string.Join("; ", flow.Paths)}");
        Assert.IsGreaterThanOrEqualTo(2 * fallback, flow.BytesPerSecond);
        router.CheckInvariant();
    }

    [TestMethod]
    public void A_single_link_pair_gets_extra_indirect_paths_when_neighbours_are_idle()
    {
        var router = new PathRouter(GpuTopology.Dgx1V100);

        using var flow = router.Route(0, 1);

        Assert.AreEqual(1, flow.Paths[0].Hops, "direct first");
        Assert.IsGreaterThan(1, flow.Paths.Count);
        Assert.IsGreaterThanOrEqualTo(1.5 * 24 * GB, flow.BytesPerSecond);
        router.CheckInvariant();
    }

    [TestMethod]
    public void On_an_nvswitch_machine_routing_adds_nothing_beyond_the_port()
    {
        var router = new PathRouter(GpuTopology.DgxA100);

        using var flow = router.Route(0, 1);

        Assert.AreEqual(300 * GB, flow.BytesPerSecond, 1);
        Assert.AreEqual(1, flow.Paths.Count, "the direct path fills the switch port: no relays");
    }

    [TestMethod]
    public void Concurrent_flows_never_oversubscribe_a_link_and_give_everything_back()
    {
        var random = Seeds.Create(TestContext);
        var router = new PathRouter(GpuTopology.Dgx1V100);
        var live = new List<RouteReservation>();
        for (int step = 0; step < 500; step++)
        {
            if (live.Count > 0 && random.Next(3) == 0)
            {
                int i = random.Next(live.Count);
                live[i].Dispose();
                live.RemoveAt(i);
            }
            else
            {
                int a = random.Next(8), b = random.Next(8);
                live.Add(random.Next(4) == 0 ? router.RouteFromHost(b) : router.Route(a, b));
            }

            router.CheckInvariant();
        }

        live.ForEach(f => f.Dispose());
        for (int a = 0; a < 8; a++)
        {
            Assert.AreEqual(12 * GB, router.Residual(PathRouter.Host, a), 1);
            for (int b = 0; b < 8; b++)
            {
                Assert.AreEqual(GpuTopology.Dgx1V100.Peer(a, b).BytesPerSecond, router.Residual(a, b), 1, $"link {a}->{b} not given back");
            }
        }
    }

    [TestMethod]
    public void A_flow_that_borrowed_a_direct_link_is_moved_off_it_for_the_pair_that_owns_it()
    {
        // A triangle: 0-1, 1-2, 0-2, one link each.
        var links = new PeerLink[3, 3];
        foreach (var (a, b) in new[] { (0, 1), (1, 0), (1, 2), (2, 1), (0, 2), (2, 0) })
        {
            links[a, b] = new PeerLink(PeerLinkKind.NvLink, 1, 24 * GB);
        }

        var router = new PathRouter(new GpuTopology("triangle", links, [0, 1, 2], 12 * GB, 900 * GB, 1L << 30, TimeSpan.Zero));
        using var first = router.Route(0, 2); // direct 0->2 and the borrowed 0->1->2
        Assert.IsTrue(first.Paths.Any(p => p.Nodes.SequenceEqual([0, 1, 2])), string.Join("; ", first.Paths));

        using var owner = router.Route(0, 1);

        Assert.IsTrue(owner.Paths.Any(p => p.Nodes.SequenceEqual([0, 1]) && p.BytesPerSecond > 0), string.Join("; ", owner.Paths));
        Assert.IsFalse(first.Paths.Any(p => p.Nodes.SequenceEqual([0, 1, 2])), "the borrower moved off 0->1");
        Assert.IsTrue(first.Paths.Any(p => p.Nodes.SequenceEqual([0, 2])), "it keeps its own direct link");
        router.CheckInvariant();
    }

    [TestMethod]
    public void With_every_gpu_path_busy_a_copy_falls_back_to_host_memory()
    {
        var links = new PeerLink[2, 2];
        links[0, 1] = new PeerLink(PeerLinkKind.NvLink, 1, 24 * GB);
        var router = new PathRouter(new GpuTopology("pair", links, [0, 1], 12 * GB, 900 * GB, 1L << 30, TimeSpan.Zero));
        using var busy = router.Route(0, 1);

        using var next = router.Route(0, 1);

        Assert.IsTrue(next.Paths.Single().ViaHost);
        Assert.AreEqual(12 * GB, next.BytesPerSecond, 1);
        router.CheckInvariant();
    }

    [TestMethod]
    public void Pcie_harvesting_borrows_idle_neighbours_and_backs_off_when_they_are_busy()
    {
        var router = new PathRouter(GpuTopology.Dgx1V100);

        using (var harvested = router.RouteFromHost(0))
        {
            TestContext.WriteLine(string.Join("; ", harvested.Paths));
            Assert.IsGreaterThanOrEqualTo(1.8 * 12 * GB, harvested.BytesPerSecond);
            Assert.IsTrue(harvested.Paths.Where(p => p.Hops == 2).All(p => GpuTopology.Dgx1V100.PcieSwitch(p.Nodes[1]) != GpuTopology.Dgx1V100.PcieSwitch(0)),
                "never a neighbour behind the same switch");
            router.CheckInvariant();
        }

        var neighbours = new[] { 2, 3, 4 }.Select(n => router.RouteFromHost(n, harvest: false)).ToList(); // their own transfers
        using var backedOff = router.RouteFromHost(0);

        Assert.AreEqual(1, backedOff.Paths.Count, string.Join("; ", backedOff.Paths));
        Assert.AreEqual(12 * GB, backedOff.BytesPerSecond, 1);
        neighbours.ForEach(n => n.Dispose());
    }

    [TestMethod]
    public void A_copy_inside_one_gpu_is_a_single_local_path()
    {
        var router = new PathRouter(GpuTopology.SingleH100);

        using var flow = router.Route(0, 0);

        Assert.AreEqual(0, flow.Paths.Single().Hops);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => router.Route(0, 1));
    }

    [TestMethod]
    public void Routing_several_copies_starts_with_the_least_residual_pair()
    {
        var router = new PathRouter(GpuTopology.Dgx1V100);
        using var loaded = router.Route(0, 1); // 0->1 now has no residual

        (int, int)[] pairs = [(4, 7), (0, 1), (0, 3)];
        var leastResidual = pairs.OrderBy(p => router.Residual(p.Item1, p.Item2)).First();
        Assert.AreEqual(0.0, router.Residual(0, 1));

        var flows = router.RouteAll(pairs);

        Assert.AreEqual(leastResidual, (flows[0].From, flows[0].To), "the pair with the least residual goes first");
        Assert.AreEqual((4, 7), (flows[^1].From, flows[^1].To), "the idle pair goes last");
        router.CheckInvariant();
        foreach (var f in flows)
        {
            f.Dispose();
        }
    }

    [TestMethod]
    public void A_lane_claimed_by_its_gpu_revokes_harvested_paths_and_is_not_lent_again()
    {
        var router = new PathRouter(GpuTopology.Dgx1V100);
        using var harvested = router.RouteFromHost(0);
        var borrowed = harvested.Paths.First(p => p.Hops == 2);
        int neighbour = borrowed.Nodes[1];
        Assert.IsFalse(harvested.IsRevoked(borrowed.Nodes));

        router.SetLaneBusy(neighbour, true);

        Assert.IsTrue(harvested.IsRevoked(borrowed.Nodes));
        Assert.IsFalse(harvested.IsRevoked(harvested.Paths[0].Nodes), "the GPU's own lane is never revoked");
        harvested.ReleasePath(borrowed.Nodes);
        using var again = router.RouteFromHost(0);
        Assert.IsFalse(again.Paths.Any(p => p.Nodes.Contains(neighbour)), "a busy lane is not lent");
        router.SetLaneBusy(neighbour, false);
        Assert.IsFalse(router.IsLaneBusy(neighbour));
        router.CheckInvariant();
    }
}
