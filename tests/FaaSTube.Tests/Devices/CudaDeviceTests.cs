using FaaSTube.Devices;
using FaaSTube.Native;
using FaaSTube.Native.Handles;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Devices;

/// <summary>The device contract on real GPUs, plus CUDA-only checks. Inconclusive where there is no CUDA.</summary>
[TestClass]
[TestCategory("Gpu")]
public sealed class CudaDeviceTests : DeviceContractTests
{
    private protected override GpuBackend Backend => GpuBackend.Cuda;

    [TestMethod]
    public void Topology_reports_the_max_pcie_link_not_the_trained_down_current_one()
    {
        using var gpus = Gpus.Open(GpuBackend.Cuda);
        if (!CudaLibrary.IsNvmlAvailable)
        {
            Assert.Inconclusive("No NVML here: the PCIe link is not read.");
        }

        // An idle GPU trains its link down (an idle H100 reports Gen1); the topology wants what the link can do.
        TestContext.WriteLine($"PCIe Gen{gpus.Topology.PcieGeneration} x{gpus.Topology.PcieWidth}");
        Assert.IsGreaterThanOrEqualTo(3, gpus.Topology.PcieGeneration);
        Assert.IsGreaterThanOrEqualTo(8, gpus.Topology.PcieWidth);
    }

    [TestMethod]
    public void Discovery_reports_devices_names_and_memory()
    {
        using var gpus = Gpus.Open(GpuBackend.Cuda);
        Assert.IsGreaterThanOrEqualTo(1, gpus.Devices.Count);
        foreach (var device in gpus.Devices)
        {
            TestContext.WriteLine($"{device}: {device.PciBusId}, {device.TotalMemory} bytes, {device.GetMemoryInfo()}");
            Assert.IsFalse(string.IsNullOrWhiteSpace(device.Name));
            Assert.IsGreaterThan(0L, device.TotalMemory);
            Assert.AreEqual(gpus.Devices.Count, gpus.Topology.GpuCount);
        }
    }

    [TestMethod]
    public void Peer_checks_agree_with_the_topology()
    {
        using var gpus = Gpus.Open(GpuBackend.Cuda);
        for (int a = 0; a < gpus.Devices.Count; a++)
        {
            for (int b = 0; b < gpus.Devices.Count; b++)
            {
                if (a != b)
                {
                    Assert.AreEqual(
                        gpus.Topology.Peer(a, b).Kind != FaaSTube.Topology.PeerLinkKind.None,
                        gpus.Devices[a].CanAccessPeer(gpus.Devices[b]));
                }
            }
        }

        Assert.ThrowsExactly<ArgumentException>(() => gpus.Devices[0].CanAccessPeer(gpus.Devices[0]));
    }

    [TestMethod]
    public void An_impossible_allocation_maps_the_cuda_error_with_its_name()
    {
        using var gpus = Gpus.Open(GpuBackend.Cuda);
        var error = Assert.ThrowsExactly<DeviceOutOfMemoryException>(() => gpus.Devices[0].Allocate(1L << 50));
        var cuda = (CudaException)error.InnerException!;
        Assert.AreEqual(CudaResult.ErrorOutOfMemory, cuda.Result);
        Assert.AreEqual("CUDA_ERROR_OUT_OF_MEMORY", cuda.ErrorName);
        StringAssert.Contains(cuda.Message, "cuMemAlloc");
    }

    [TestMethod]
    public void Nvrtc_compile_errors_carry_the_compiler_log()
    {
        if (!CudaLibrary.IsNvrtcAvailable)
        {
            Assert.Inconclusive($"No NVRTC here: {CudaLibrary.NvrtcUnavailableReason}");
        }

        var error = Assert.ThrowsExactly<CudaException>(
            () => NvrtcCompiler.Compile("extern \"C\" __global__ void k() { undefined_name(); }", "bad.cu", [], cubin: false));
        StringAssert.Contains(error.Message, "undefined_name");
        Assert.AreEqual(CudaResult.ErrorInvalidSource, error.Result);
    }
}
