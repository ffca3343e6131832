using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Tests.Support;
using FaaSTube.Topology;
using FaaSTube.Transfers;
using FaaSTube.Transfers.Routing;

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

    /// <summary>A simulated machine with a virtual clock, a copier, and a source and destination buffer.</summary>
    private sealed class Machine : IDisposable
    {
        public Machine(GpuTopology topology, int from, int to)
        {
            Gpus = Support.Gpus.Open(GpuBackend.Simulated, topology, clock: Clock, simulatedMemory: 2L << 30);
            Copier = new MultiPathCopier(Gpus);
            Source = Gpus.Devices[from].Allocate(Bytes);
            Destination = Gpus.Devices[to].Allocate(Bytes);
            Stream = Gpus.Devices[from].CreateStream();
        }

        public VirtualClock Clock { get; } = new();

        public GpuSystem Gpus { get; }

        public MultiPathCopier Copier { get; }

        public DeviceBuffer Source { get; }

        public DeviceBuffer Destination { get; }

        public GpuStream Stream { get; }

        /// <summary>Bytes per second of <paramref name="copy"/> in virtual time.</summary>
        public async Task<double> TimedAsync(Func<Task> copy)
        {
            var start = Clock.Now;
            await copy();
            return Bytes / (Clock.Now - start).TotalSeconds;
        }

        public Task<double> RoutedAsync() => TimedAsync(() => Copier.CopyAsync(Source, Destination));

        public Task<double> DirectAsync() => TimedAsync(async () => await Stream.CopyAsync(Source, Destination));

        public void Dispose()
        {
            Stream.Dispose();
            Copier.Dispose();
            Source.Dispose();
            Destination.Dispose();
            Gpus.Dispose();
        }
    }

    [TestMethod]
    public async Task On_dgx1_a_pair_without_nvlink_copies_at_least_twice_as_fast_as_the_pcie_fallback()
    {
        using var m = new Machine(GpuTopology.Dgx1V100, 0, 5);

        double routed = await m.RoutedAsync();
        using var everyGpuPath = m.Copier.Router.Route(0, 5); // the next copy finds no GPU path: host fallback
        double fallback = await m.RoutedAsync();

        TestContext.WriteLine($"0 -> 5: routed {routed / 1e9:F1} GB/s, PCIe fallback {fallback / 1e9:F1} GB/s");
        Assert.IsGreaterThanOrEqualTo(2 * fallback, routed);
    }

    [TestMethod]
    public async Task On_dgx1_a_single_link_pair_with_idle_neighbours_beats_its_direct_link_by_half()
    {
        using var m = new Machine(GpuTopology.Dgx1V100, 0, 1);

        double direct = await m.DirectAsync();
        double routed = await m.RoutedAsync();

        TestContext.WriteLine($"0 -> 1: direct {direct / 1e9:F1} GB/s, routed {routed / 1e9:F1} GB/s");
        Assert.IsGreaterThanOrEqualTo(1.5 * direct, routed);
    }

    [TestMethod]
    public async Task On_dgx_a100_routing_adds_nothing_and_costs_nothing()
    {
        using var m = new Machine(GpuTopology.DgxA100, 0, 1);

        double direct = await m.DirectAsync();
        double routed = await m.RoutedAsync();

        TestContext.WriteLine($"A100 0 -> 1: direct {direct / 1e9:F1} GB/s, routed {routed / 1e9:F1} GB/s");
        Assert.AreEqual(1.0, routed / direct, 0.1);
    }

    [TestMethod]
    public async Task Pcie_harvesting_moves_one_gpus_host_data_at_least_1_8_times_a_single_link()
    {
        using var m = new Machine(GpuTopology.Dgx1V100, 0, 0);
        using var pinned = m.Gpus.Devices[0].AllocatePinned(Bytes);

        double single = await m.TimedAsync(async () => await m.Stream.CopyAsync(pinned.Memory, m.Destination));
        IReadOnlyList<RoutePath> used = [];
        double harvested = await m.TimedAsync(async () => used = await m.Copier.FromHostAsync(pinned.Memory, m.Destination));
        for (int n = 1; n < 8; n++)
        {
            m.Copier.Router.SetLaneBusy(n, true);
        }

        double backedOff = await m.TimedAsync(() => m.Copier.FromHostAsync(pinned.Memory, m.Destination));

        TestContext.WriteLine($"{string.Join("; ", used)}: one lane {single / 1e9:F1} GB/s, harvested {harvested / 1e9:F1} GB/s, neighbours busy {backedOff / 1e9:F1} GB/s");
        Assert.IsGreaterThanOrEqualTo(1.8 * single, harvested);
        Assert.AreEqual(1.0, backedOff / single, 0.1, "with its neighbours busy it backs off to its own lane");
    }
}
