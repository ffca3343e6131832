using FaaSTube.Devices;
using FaaSTube.Kernels;
using FaaSTube.Tests.Support;
using FaaSTube.Topology;
using FaaSTube.Transfers;
using FaaSTube.Transfers.Routing;

namespace FaaSTube.Tests.Transfers;

/// <summary>Topology discovery and routing on a real machine (the H100 box: one GPU). Inconclusive without CUDA.</summary>
[TestClass]
[TestCategory("Gpu")]
public sealed class CudaRoutingTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task Discovery_matches_the_machine_and_a_same_gpu_copy_is_one_local_path()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Gpus.Open(GpuBackend.Cuda);
        var topology = gpus.Topology;
        TestContext.WriteLine(TopologyJson.Write(topology));
        Assert.AreEqual(gpus.Devices.Count, topology.GpuCount);
        if (topology.GpuCount == 1)
        {
            Assert.AreEqual(default, topology.Peer(0, 0), "one GPU: no peers");
        }

        using var copier = new MultiPathCopier(gpus);
        var data = random.Bytes(16 << 20);
        using var a = gpus.Devices[0].Allocate(data.Length);
        using var b = gpus.Devices[0].Allocate(data.Length);
        using var stream = gpus.Devices[0].CreateStream();
        await stream.CopyAsync(data, a);

        var paths = await copier.CopyAsync(a, b);

        Assert.AreEqual(0, paths.Single().Hops);
        Assert.AreEqual(DataChecksum.Compute(data), await stream.ChecksumAsync(b));
    }
}
