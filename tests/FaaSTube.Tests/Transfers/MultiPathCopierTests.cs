using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Kernels;
using FaaSTube.Tests.Support;
using FaaSTube.Topology;
using FaaSTube.Transfers;

namespace FaaSTube.Tests.Transfers;

[TestClass]
public sealed class MultiPathCopierTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [DataRow(0, 5)]
    [DataRow(0, 1)]
    [DataRow(3, 3)]
    public async Task Data_through_relays_arrives_byte_identical(int from, int to)
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Gpus.Open(GpuBackend.Simulated, GpuTopology.Dgx1V100);
        var copier = new MultiPathCopier(gpus, chunkBytes: 256 << 10);
        var data = random.Bytes((9 << 20) + 4321);
        using var source = gpus.Devices[from].Allocate(data.Length);
        using var destination = gpus.Devices[to].Allocate(data.Length);
        using (var stream = gpus.Devices[from].CreateStream())
        {
            await stream.CopyAsync(data, source);
        }

        var paths = await copier.CopyAsync(source, destination);

        TestContext.WriteLine(string.Join("; ", paths));
        using var check = gpus.Devices[to].CreateStream();
        Assert.AreEqual(DataChecksum.Compute(data), await check.ChecksumAsync(destination));
        Assert.AreEqual(from == to ? 1 : 2, Math.Min(2, paths.Count), "several paths between GPUs, one inside a GPU");
        Assert.AreEqual(24e9, copier.Router.Residual(0, 1), 1, "reservations given back");
        copier.Router.CheckInvariant();
    }

    [TestMethod]
    public async Task Host_data_through_harvested_neighbours_arrives_byte_identical()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Gpus.Open(GpuBackend.Simulated, GpuTopology.Dgx1V100);
        var copier = new MultiPathCopier(gpus, chunkBytes: 256 << 10);
        var data = random.Bytes((6 << 20) + 77);
        using var destination = gpus.Devices[0].Allocate(data.Length);

        var paths = await copier.FromHostAsync(data, destination);

        Assert.IsGreaterThan(1, paths.Count, "a neighbour's lane was borrowed");
        using var check = gpus.Devices[0].CreateStream();
        Assert.AreEqual(DataChecksum.Compute(data), await check.ChecksumAsync(destination));
        Assert.AreEqual(12e9, copier.Router.Residual(PathRouter.Host, 2), 1);
    }

    [TestMethod]
    public async Task A_failed_or_cancelled_copy_gives_its_reservations_back()
    {
        using var gpus = Gpus.Open(GpuBackend.Simulated, GpuTopology.Dgx1V100);
        var machine = ((SimulatedGpuDevice)gpus.Devices[0]).Machine;
        var copier = new MultiPathCopier(gpus, chunkBytes: 64 << 10);
        using var source = gpus.Devices[0].Allocate(4 << 20);
        using var destination = gpus.Devices[5].Allocate(4 << 20);
        int seen = 0;
        machine.OnExecute = _ =>
        {
            if (Interlocked.Increment(ref seen) == 7)
            {
                throw new IOException("injected NVLink error");
            }
        };

        await Assert.ThrowsAsync<IOException>(async () => await copier.CopyAsync(source, destination));
        machine.OnExecute = null;
        await Assert.ThrowsAsync<OperationCanceledException>(async () => await copier.CopyAsync(source, destination, new CancellationToken(true)));

        for (int n = 0; n < 8; n++)
        {
            Assert.AreEqual(GpuTopology.Dgx1V100.Peer(0, n).BytesPerSecond, copier.Router.Residual(0, n), 1);
        }

        copier.Router.CheckInvariant();
    }
}
