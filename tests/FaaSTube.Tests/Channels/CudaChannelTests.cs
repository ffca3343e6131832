using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Native;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>The cross-process zero-copy path on real GPUs: real IPC handles, a consumer kernel's checksum. Inconclusive without CUDA.</summary>
[TestClass]
[TestCategory("Gpu")]
public sealed class CudaChannelTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task A_consumer_process_maps_published_gpu_data_through_cuda_ipc_and_checksums_it_on_the_gpu()
    {
        if (!CudaLibrary.IsAvailable)
        {
            Assert.Inconclusive($"No CUDA here: {CudaLibrary.UnavailableReason}");
        }

        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(backend: GpuBackend.Cuda);
        long seed = random.NextInt64(1, long.MaxValue);
        const int Length = (8 << 20) + 3;

        using var producer = ChildProcess.StartWith("cuda", "tube-publish", h.Socket, "wf", Length.ToString(), seed.ToString(), "2");
        var (exit, output) = await producer.WaitAsync();
        Assert.AreEqual(0, exit, output);
        var id = output.Trim();
        ulong expected = PoolHarness.Expected(Length, (ulong)seed);

        using var consumer = ChildProcess.StartWith("cuda", "tube-get", h.Socket, "wf", id, "0", expected.ToString());
        var (consumerExit, consumerOutput) = await consumer.WaitAsync();
        Assert.AreEqual(0, consumerExit, consumerOutput);
        Assert.AreEqual("ok", consumerOutput.Trim());

        using var host = ChildProcess.StartWith("cuda", "tube-gethost", h.Socket, "wf", id, expected.ToString());
        var (hostExit, hostOutput) = await host.WaitAsync();
        Assert.AreEqual(0, hostExit, hostOutput);
    }
}
