using FaaSTube.Devices;
using FaaSTube.Tests.Support;
using FaaSTube.Topology;
using FaaSTube.Transfers;

namespace FaaSTube.Tests.Transfers;

/// <summary>
/// Executed copies timed under the presets' link model with a virtual clock (exact, machine-independent):
/// multi-path routing against the direct link alone or the PCIe fallback, and PCIe harvesting.
/// </summary>
[TestClass]
public sealed class RoutedThroughputTests
{
    private const long Bytes = 256L << 20;

    public TestContext TestContext { get; set; } = null!;

    private static async Task<double> TimedAsync(VirtualClock clock, Func<Task> copy)
    {
        var start = clock.Now;
        await copy();
        return Bytes / (clock.Now - start).TotalSeconds;
    }

    [TestMethod]
    public async Task On_dgx1_a_pair_without_nvlink_copies_at_least_twice_as_fast_as_the_pcie_fallback()
    {
        var clock = new VirtualClock();
        using var gpus = Gpus.Open(GpuBackend.Simulated, GpuTopology.Dgx1V100, clock: clock, simulatedMemory: 2L << 30);
        using var copier = new MultiPathCopier(gpus);
        using var source = gpus.Devices[0].Allocate(Bytes);
        using var destination = gpus.Devices[5].Allocate(Bytes);

        double routed = await TimedAsync(clock, () => copier.CopyAsync(source, destination));
        using var everyGpuPath = copier.Router.Route(0, 5); // the next copy finds no GPU path: host fallback
        double fallback = await TimedAsync(clock, () => copier.CopyAsync(source, destination));

        TestContext.WriteLine($"0 -> 5: routed {routed / 1e9:F1} GB/s, PCIe fallback {fallback / 1e9:F1} GB/s");
        Assert.IsGreaterThanOrEqualTo(2 * fallback, routed);
    }

    [TestMethod]
    public async Task On_dgx1_a_single_link_pair_with_idle_neighbours_beats_its_direct_link_by_half()
    {
        var clock = new VirtualClock();
        using var gpus = Gpus.Open(GpuBackend.Simulated, GpuTopology.Dgx1V100, clock: clock, simulatedMemory: 2L << 30);
        using var copier = new MultiPathCopier(gpus);
        using var source = gpus.Devices[0].Allocate(Bytes);
        using var destination = gpus.Devices[1].Allocate(Bytes);
        using var stream = gpus.Devices[0].CreateStream();

        double direct = await TimedAsync(clock, async () => await stream.CopyAsync(source, destination));
        double routed = await TimedAsync(clock, () => copier.CopyAsync(source, destination));

        TestContext.WriteLine($"0 -> 1: direct {direct / 1e9:F1} GB/s, routed {routed / 1e9:F1} GB/s");
        Assert.IsGreaterThanOrEqualTo(1.5 * direct, routed);
    }

    [TestMethod]
    public async Task On_dgx_a100_routing_adds_nothing_and_costs_nothing()
    {
        var clock = new VirtualClock();
        using var gpus = Gpus.Open(GpuBackend.Simulated, GpuTopology.DgxA100, clock: clock, simulatedMemory: 2L << 30);
        using var copier = new MultiPathCopier(gpus);
        using var source = gpus.Devices[0].Allocate(Bytes);
        using var destination = gpus.Devices[1].Allocate(Bytes);
        using var stream = gpus.Devices[0].CreateStream();

        double direct = await TimedAsync(clock, async () => await stream.CopyAsync(source, destination));
        double routed = await TimedAsync(clock, () => copier.CopyAsync(source, destination));

        TestContext.WriteLine($"A100 0 -> 1: direct {direct / 1e9:F1} GB/s, routed {routed / 1e9:F1} GB/s");
        Assert.AreEqual(1.0, routed / direct, 0.1);
    }

    [TestMethod]
    public async Task Pcie_harvesting_moves_one_gpus_host_data_at_least_1_8_times_a_single_link()
    {
        var clock = new VirtualClock();
        using var gpus = Gpus.Open(GpuBackend.Simulated, GpuTopology.Dgx1V100, clock: clock, simulatedMemory: 2L << 30);
        using var copier = new MultiPathCopier(gpus);
        using var pinned = gpus.Devices[0].AllocatePinned(Bytes);
        using var destination = gpus.Devices[0].Allocate(Bytes);
        using var stream = gpus.Devices[0].CreateStream();

        double single = await TimedAsync(clock, async () => await stream.CopyAsync(pinned.Memory, destination));
        IReadOnlyList<RoutePath> used = [];
        double harvested = await TimedAsync(clock, async () => used = await copier.FromHostAsync(pinned.Memory, destination));
        TestContext.WriteLine(string.Join("; ", used));
        for (int n = 1; n < 8; n++)
        {
            copier.Router.SetLaneBusy(n, true);
        }

        double backedOff = await TimedAsync(clock, () => copier.FromHostAsync(pinned.Memory, destination));

        TestContext.WriteLine($"host -> 0: one lane {single / 1e9:F1} GB/s, harvested {harvested / 1e9:F1} GB/s, neighbours busy {backedOff / 1e9:F1} GB/s");
        Assert.IsGreaterThanOrEqualTo(1.8 * single, harvested);
        Assert.AreEqual(1.0, backedOff / single, 0.1, "with its neighbours busy it backs off to its own lane");
    }
}
