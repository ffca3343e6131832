using FaaSTube.Devices;
using FaaSTube.Devices.Cuda;
using FaaSTube.Native;
using FaaSTube.Tests.Support;
using FaaSTube.Topology;
using FaaSTube.Transfers;

namespace FaaSTube.Tests.Transfers;

/// <summary>The transfer scheduler plans with the device's host link: the modelled one, or the PCIe link's generation and width.</summary>
[TestClass]
public sealed class HostLinkTests
{
    [TestMethod]
    [DataRow(3, 16, 12e9)]
    [DataRow(4, 16, 25e9)]
    [DataRow(5, 16, 55e9)]
    [DataRow(5, 8, 27.5e9)]
    [DataRow(4, 4, 6.25e9)]
    [DataRow(6, 16, 110e9)]
    public void Pcie_bandwidth_follows_generation_and_width(int generation, int width, double expected) =>
        Assert.AreEqual(expected, PcieBandwidth.BytesPerSecond(generation, width)!.Value, 1);

    [TestMethod]
    public void An_unknown_link_is_taken_as_the_documented_fallback()
    {
        Assert.IsNull(PcieBandwidth.BytesPerSecond(0, 16));
        Assert.IsNull(PcieBandwidth.BytesPerSecond(5, 0));
        Assert.AreEqual(PcieBandwidth.Unknown, PcieBandwidth.Of(null));
        Assert.AreEqual(PcieBandwidth.Unknown, PcieBandwidth.Of((0, 0)));
        Assert.AreEqual(55e9, PcieBandwidth.Of((5, 16)), 1);
    }

    [TestMethod]
    public async Task The_engine_plans_with_the_simulated_devices_modelled_host_link_unless_the_options_say_otherwise()
    {
        using var gpus = Gpus.Open(GpuBackend.Simulated, GpuTopology.Dgx1V100, simulatedMemory: 1L << 30);
        var options = new TransferEngineOptions { StagingBytes = 4 << 20, ChunkBytes = 1 << 20 };
        await using (var engine = new TransferEngine(gpus.Devices[3], options))
        {
            Assert.AreEqual(GpuTopology.Dgx1V100.HostBytesPerSecond, engine.LinkBytesPerSecond);
        }

        options.LinkBytesPerSecond = 7e9;
        await using (var engine = new TransferEngine(gpus.Devices[3], options))
        {
            Assert.AreEqual(7e9, engine.LinkBytesPerSecond);
        }
    }

    [TestMethod]
    [TestCategory("Gpu")]
    public async Task Host_link_bandwidth_follows_the_pcie_link()
    {
        using var gpus = Gpus.Open(GpuBackend.Cuda);
        var device = (CudaGpuDevice)gpus.Devices[0];
        await using var engine = new TransferEngine(device, new TransferEngineOptions { StagingBytes = 4 << 20, ChunkBytes = 1 << 20 });

        Assert.AreEqual(PcieBandwidth.Of(device.PcieLink), engine.LinkBytesPerSecond);
        Assert.AreEqual(engine.LinkBytesPerSecond, gpus.Topology.HostBytesPerSecond);
        if (CudaLibrary.IsNvmlAvailable)
        {
            Assert.IsNotNull(device.PcieLink, "NVML is here: the link's generation and width are known");
            Assert.AreEqual(PcieBandwidth.BytesPerSecond(device.PcieLink.Value.Generation, device.PcieLink.Value.Width), engine.LinkBytesPerSecond);
        }
    }
}
