using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Kernels;
using FaaSTube.Tests.Support;
using FaaSTube.Topology;
using FaaSTube.Transfers;
using FaaSTube.Transfers.Routing;

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
        using var copier = new MultiPathCopier(gpus, chunkBytes: 256 << 10);
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
        using var copier = new MultiPathCopier(gpus, chunkBytes: 256 << 10);
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
        using var copier = new MultiPathCopier(gpus, chunkBytes: 64 << 10);
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

    [TestMethod]
    public async Task A_harvested_path_revoked_mid_copy_stops_and_the_rest_still_arrives()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Gpus.Open(GpuBackend.Simulated, GpuTopology.Dgx1V100);
        var machine = ((SimulatedGpuDevice)gpus.Devices[0]).Machine;
        using var copier = new MultiPathCopier(gpus, chunkBytes: 128 << 10);
        var data = random.Bytes(8 << 20);
        using var destination = gpus.Devices[0].Allocate(data.Length);
        int ops = 0;
        machine.OnExecute = _ =>
        {
            if (Interlocked.Increment(ref ops) == 4)
            {
                for (int n = 1; n < 8; n++)
                {
                    copier.Router.SetLaneBusy(n, true); // every neighbour's own transfers start
                }
            }
        };

        await copier.FromHostAsync(data, destination);
        machine.OnExecute = null;

        using var check = gpus.Devices[0].CreateStream();
        Assert.AreEqual(DataChecksum.Compute(data), await check.ChecksumAsync(destination));
        Assert.AreEqual(12e9, copier.Router.Residual(PathRouter.Host, 2), 1, "the borrowed lane was given back");
        copier.Router.CheckInvariant();
    }

    [TestMethod]
    public async Task A_transfer_engine_marks_its_lane_busy_so_neighbours_do_not_borrow_it()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Gpus.Open(GpuBackend.Simulated, GpuTopology.Dgx1V100);
        var router = new PathRouter(gpus.Topology);
        await using var engine = new TransferEngine(gpus.Devices[0], new TransferEngineOptions { ChunkBytes = 64 << 10, StagingBytes = 1 << 20 }, router, FaaSTube.Hosting.FaaSTubeServices.Default);
        var machine = ((SimulatedGpuDevice)gpus.Devices[0]).Machine;
        bool? busyDuring = null;
        bool? lentDuring = null;
        machine.OnExecute = op =>
        {
            if (op.Kind == StreamOpKind.HostToDevice && busyDuring is null)
            {
                busyDuring = router.IsLaneBusy(0);
                using var harvest = router.RouteFromHost(2); // GPU 0 is an NVLink neighbour of GPU 2 behind another switch
                lentDuring = harvest.Paths.Any(p => p.Nodes.Contains(0));
            }
        };
        using var buffer = gpus.Devices[0].Allocate(4 << 20);

        await engine.ToDeviceAsync(random.Bytes(4 << 20), buffer);
        machine.OnExecute = null;

        Assert.AreEqual(true, busyDuring);
        Assert.AreEqual(false, lentDuring, "GPU 0's lane was not lent while its own transfer ran");
    }

    [TestMethod]
    public async Task Relays_stage_in_the_pool_and_host_hops_go_through_the_transfer_engines()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Gpus.Open(GpuBackend.Simulated, GpuTopology.Dgx1V100);
        var pools = gpus.Devices.Select(d => new FaaSTube.Memory.GpuMemoryPool(d, new FaaSTube.Memory.GpuPoolOptions { SlabBytes = 4 << 20, FloorBytes = 0, TrimInterval = null })).ToArray();
        var engines = gpus.Devices.Select(d => new TransferEngine(d, new TransferEngineOptions { ChunkBytes = 64 << 10, StagingBytes = 2 << 20 })).ToArray();
        try
        {
            using var copier = new MultiPathCopier(gpus, chunkBytes: 256 << 10, relays: pools.Select(p => new PoolRelayBuffers(p)).ToArray(), hostLanes: engines);
            var data = random.Bytes((5 << 20) + 9);
            using var source = gpus.Devices[0].Allocate(data.Length);
            using var destination = gpus.Devices[5].Allocate(data.Length);
            using var hostOnly = copier.Router.Route(0, 5); // takes every GPU path: the next copy falls back to the host
            using (var stream = gpus.Devices[0].CreateStream())
            {
                await stream.CopyAsync(data, source);
            }

            var viaHost = await copier.CopyAsync(source, destination);
            hostOnly.Dispose();
            Assert.IsTrue(viaHost.Single().ViaHost, string.Join("; ", viaHost));
            var relayed = await copier.CopyAsync(source, destination);

            using var check = gpus.Devices[5].CreateStream();
            Assert.AreEqual(DataChecksum.Compute(data), await check.ChecksumAsync(destination));
            Assert.IsTrue(relayed.Any(p => p.Hops >= 2));
            var relays = relayed.SelectMany(p => p.Nodes.Skip(1).SkipLast(1)).Distinct().ToList();
            Assert.IsTrue(relays.All(r => pools[r].GetStatistics().Allocations >= 2), "relay slots came from the relays' pools");
            Assert.IsTrue(pools.All(p => p.GetStatistics().InUseBytes == 0), "and went back");
        }
        finally
        {
            foreach (var e in engines)
            {
                await e.DisposeAsync();
            }

            foreach (var p in pools)
            {
                await p.DisposeAsync();
            }
        }
    }

    [TestMethod]
    public async Task Routing_needs_only_a_host_lane_and_a_relay_buffer_source_and_gives_every_relay_back()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Gpus.Open(GpuBackend.Simulated, GpuTopology.Dgx1V100);
        var relays = gpus.Devices.Select(d => new CountingRelays(d)).ToArray();
        var lanes = gpus.Devices.Select(d => new CountingLane(d)).ToArray();
        try
        {
            using var copier = new MultiPathCopier(gpus, chunkBytes: 256 << 10, relays: relays, hostLanes: lanes);
            var data = random.Bytes((3 << 20) + random.Next(1, 4096));
            using var source = gpus.Devices[0].Allocate(data.Length);
            using var destination = gpus.Devices[5].Allocate(data.Length);
            using (var stream = gpus.Devices[0].CreateStream())
            {
                await stream.CopyAsync(data, source);
            }

            var relayed = await copier.CopyAsync(source, destination);
            using (copier.Router.Route(0, 5)) // every GPU path taken: the next copy goes through the host
            {
                var viaHost = await copier.CopyAsync(source, destination);
                Assert.IsTrue(viaHost.Single().ViaHost, string.Join("; ", viaHost));
            }

            using var check = gpus.Devices[5].CreateStream();
            Assert.AreEqual(DataChecksum.Compute(data), await check.ChecksumAsync(destination));
            Assert.IsTrue(relayed.Any(p => p.Hops >= 2), string.Join("; ", relayed));
            Assert.IsGreaterThan(0, relays.Sum(r => r.Rented), "relay slots came from the sources");
            Assert.AreEqual(relays.Sum(r => r.Rented), relays.Sum(r => r.Returned), "and every one went back");
            Assert.IsGreaterThan(0, lanes[0].ToHost, "the host hop out of GPU 0 went through its lane");
            Assert.IsGreaterThan(0, lanes[5].ToDevice, "the host hop into GPU 5 went through its lane");
        }
        finally
        {
            foreach (var lane in lanes)
            {
                lane.Dispose();
            }
        }
    }

    /// <summary>Relay slots as plain device buffers, counted.</summary>
    private sealed class CountingRelays(GpuDevice device) : IRelayBufferSource
    {
        private int _rented;
        private int _returned;

        public int Rented => Volatile.Read(ref _rented);

        public int Returned => Volatile.Read(ref _returned);

        public ValueTask<IRelayBuffer> RentAsync(int bytes, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _rented);
            return ValueTask.FromResult<IRelayBuffer>(new Slot(this, device.Allocate(bytes)));
        }

        private sealed class Slot(CountingRelays owner, DeviceBuffer buffer) : IRelayBuffer
        {
            public DeviceMemory Memory => buffer;

            public void Dispose()
            {
                buffer.Dispose();
                Interlocked.Increment(ref owner._returned);
            }
        }
    }

    /// <summary>A host lane that is a plain stream, counted.</summary>
    private sealed class CountingLane(GpuDevice device) : IHostLane, IDisposable
    {
        private readonly GpuStream _stream = device.CreateStream();
        private int _toDevice;
        private int _toHost;

        public int ToDevice => Volatile.Read(ref _toDevice);

        public int ToHost => Volatile.Read(ref _toHost);

        public ValueTask CopyToDeviceAsync(ReadOnlyMemory<byte> source, DeviceMemory destination, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _toDevice);
            return _stream.CopyAsync(source, destination, cancellationToken);
        }

        public ValueTask CopyToHostAsync(DeviceMemory source, Memory<byte> destination, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _toHost);
            return _stream.CopyAsync(source, destination, cancellationToken);
        }

        public void Dispose() => _stream.Dispose();
    }
}
