using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Kernels;
using FaaSTube.Platform;
using FaaSTube.Tests.Support;
using FaaSTube.Topology;

namespace FaaSTube.Tests.Devices;

/// <summary>The device contract on the simulated GPU, and what only the simulation has (link model, sweeping, hooks).</summary>
[TestClass]
public sealed class SimulatedDeviceTests : DeviceContractTests
{
    private protected override GpuBackend Backend => GpuBackend.Simulated;

    [TestMethod]
    public async Task Peer_copies_between_simulated_gpus_are_byte_exact()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Gpus.Open(GpuBackend.Simulated, GpuTopology.Dgx1V100, chunkBytes: 256 << 10);
        var data = random.Bytes((1 << 20) + 1);
        using var a = gpus.Devices[0].Allocate(data.Length);
        using var b = gpus.Devices[5].Allocate(data.Length);
        using var stream = gpus.Devices[0].CreateStream();
        await stream.CopyAsync(data, a);

        await stream.CopyAsync(a, b);

        using var stream5 = gpus.Devices[5].CreateStream();
        Assert.AreEqual(DataChecksum.Compute(data), await stream5.ChecksumAsync(b));
        Assert.IsTrue(gpus.Devices[0].CanAccessPeer(gpus.Devices[3]));
        Assert.IsFalse(gpus.Devices[0].CanAccessPeer(gpus.Devices[5]));
        Assert.ThrowsExactly<NotSupportedException>(() => gpus.Devices[0].EnablePeerAccess(gpus.Devices[5]));
        gpus.Devices[0].EnablePeerAccess(gpus.Devices[3]);
    }

    [TestMethod]
    public async Task Cancellation_mid_copy_stops_at_a_chunk_boundary_and_keeps_finished_chunks()
    {
        var random = Seeds.Create(TestContext);
        const int Chunk = 64 << 10;
        const int Chunks = 32;
        using var cts = new CancellationTokenSource();
        using var gpus = Gpus.Open(GpuBackend.Simulated, chunkBytes: Chunk);
        var machine = ((SimulatedGpuDevice)gpus.Devices[0]).Machine;
        var data = random.Bytes(Chunk * Chunks);
        using var buffer = gpus.Devices[0].Allocate(data.Length);
        using var stream = gpus.Devices[0].CreateStream();
        await stream.FillAsync(buffer, 0);
        int executed = 0;
        machine.OnExecute = op =>
        {
            if (op.Kind == StreamOpKind.HostToDevice && Interlocked.Increment(ref executed) == 2)
            {
                cts.Cancel();
            }
        };

        await Assert.ThrowsAsync<OperationCanceledException>(async () => await stream.CopyAsync(data, buffer, cts.Token));
        machine.OnExecute = null;

        var back = new byte[data.Length];
        await stream.CopyAsync(buffer, back.AsMemory());
        int done = executed;
        TestContext.WriteLine($"{done} of {Chunks} chunks ran before the cancellation was seen");
        Assert.IsTrue(done >= 2 && done < Chunks, $"{done} chunks ran");
        CollectionAssert.AreEqual(data[..(done * Chunk)], back[..(done * Chunk)], "finished chunks are valid");
        Assert.IsTrue(back.AsSpan(done * Chunk).IndexOfAnyExcept((byte)0) < 0, "the rest is untouched");
    }

    [TestMethod]
    public async Task A_failing_chunk_fails_the_copy_with_its_error_and_the_stream_goes_on()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Gpus.Open(GpuBackend.Simulated, chunkBytes: 4096);
        var machine = ((SimulatedGpuDevice)gpus.Devices[0]).Machine;
        var data = random.Bytes(10 * 4096);
        using var buffer = gpus.Devices[0].Allocate(data.Length);
        using var stream = gpus.Devices[0].CreateStream();
        int seen = 0;
        machine.OnExecute = _ =>
        {
            if (Interlocked.Increment(ref seen) == 3)
            {
                throw new IOException("injected DMA failure");
            }
        };

        var error = await Assert.ThrowsAsync<IOException>(async () => await stream.CopyAsync(data, buffer));
        machine.OnExecute = null;

        Assert.AreEqual("injected DMA failure", error.Message);
        await stream.CopyAsync(data, buffer);
        Assert.AreEqual(DataChecksum.Compute(data), await stream.ChecksumAsync(buffer));
    }

    [TestMethod]
    public async Task The_link_model_charges_copies_exactly_under_a_virtual_clock()
    {
        var clock = new VirtualClock();
        using var gpus = Gpus.Open(GpuBackend.Simulated, GpuTopology.Dgx1V100, clock: clock);
        var topology = gpus.Topology;
        const long Bytes = 24_000_000; // 1 ms on one 24 GB/s NVLink
        using var g0 = gpus.Devices[0].Allocate(Bytes);
        using var g1 = gpus.Devices[1].Allocate(Bytes);
        using var g3 = gpus.Devices[3].Allocate(Bytes);
        using var g5 = gpus.Devices[5].Allocate(Bytes);
        using var stream = gpus.Devices[0].CreateStream();
        var latency = topology.LinkLatency;

        var t0 = clock.Now;
        await stream.CopyAsync(g0, g1); // one NVLink
        Assert.AreEqual(t0 + latency + TimeSpan.FromMilliseconds(1), clock.Now);

        t0 = clock.Now;
        await stream.CopyAsync(g0, g3); // two NVLinks
        Assert.AreEqual(t0 + latency + TimeSpan.FromMilliseconds(0.5), clock.Now);

        t0 = clock.Now;
        await stream.CopyAsync(g0, g5); // no NVLink: down to the host and up again, 12 GB/s each
        Assert.AreEqual(t0 + 2 * (latency + TimeSpan.FromMilliseconds(2)), clock.Now);

        using var pinned = gpus.Devices[0].AllocatePinned(Bytes); // pinned: a pageable copy is staged in slots, each charged its latency
        t0 = clock.Now;
        await stream.CopyAsync(pinned.Memory, g0); // PCIe Gen3
        Assert.AreEqual(t0 + latency + TimeSpan.FromMilliseconds(2), clock.Now);
    }

    [TestMethod]
    public void Allocation_beyond_device_memory_is_a_clear_out_of_memory_error()
    {
        using var gpus = Gpus.Open(GpuBackend.Simulated, simulatedMemory: 1 << 20);
        var device = gpus.Devices[0];
        using var first = device.Allocate(768 << 10);
        Assert.AreEqual((1L << 20) - (768 << 10), device.GetMemoryInfo().Free);

        var error = Assert.ThrowsExactly<DeviceOutOfMemoryException>(() => device.Allocate(512 << 10));
        StringAssert.Contains(error.Message, "262144 of 1048576 are free");
        first.Dispose();
        Assert.AreEqual(1L << 20, device.GetMemoryInfo().Free);
        using var second = device.Allocate(1 << 20);
    }

    [TestMethod]
    public async Task Opening_a_simulated_system_sweeps_files_of_dead_owners_only()
    {
        string dir = Directory.CreateTempSubdirectory("faastube-sweep-").FullName;
        try
        {
            using var exited = ChildProcess.Start("exit");
            int deadPid = exited.Id;
            await exited.WaitAsync();
            string dead = SharedMemoryFile.PathOf(dir, deadPid, Guid.NewGuid());
            string alive = SharedMemoryFile.PathOf(dir, Environment.ProcessId, Guid.NewGuid());
            File.WriteAllBytes(dead, new byte[16]);
            File.WriteAllBytes(alive, new byte[16]);

            using var gpus = GpuSystem.Open(new GpuSystemOptions { Backend = GpuBackend.Simulated, SimulatedMemoryDirectory = dir });

            Assert.IsFalse(File.Exists(dead), "a dead owner's file must be removed");
            Assert.IsTrue(File.Exists(alive), "a live owner's file must stay");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [TestMethod]
    public void Freed_allocations_remove_their_shared_memory_file_and_cannot_be_imported()
    {
        string dir = Directory.CreateTempSubdirectory("faastube-free-").FullName;
        try
        {
            using var gpus = GpuSystem.Open(new GpuSystemOptions { Backend = GpuBackend.Simulated, SimulatedMemoryDirectory = dir });
            var buffer = gpus.Devices[0].Allocate(4096);
            var handle = gpus.Devices[0].Export(buffer);
            Assert.AreEqual(1, Directory.GetFiles(dir).Length);

            buffer.Dispose();

            Assert.AreEqual(0, Directory.GetFiles(dir).Length);
            Assert.ThrowsExactly<ArgumentException>(() => gpus.Devices[0].Import(handle));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [TestMethod]
    public async Task An_import_in_the_same_process_sees_the_same_bytes()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Gpus.Open(GpuBackend.Simulated);
        var device = gpus.Devices[0];
        var data = random.Bytes(12345);
        using var buffer = device.Allocate(data.Length);
        using var stream = device.CreateStream();
        await stream.CopyAsync(data, buffer);

        using var imported = device.Import(device.Export(buffer));

        Assert.IsTrue(imported.IsImported);
        Assert.AreEqual(DataChecksum.Compute(data), await stream.ChecksumAsync(imported));
        Assert.ThrowsExactly<ArgumentException>(() => device.Export(imported));
    }

    [TestMethod]
    public void A_handle_naming_a_path_outside_the_memory_folder_is_rejected()
    {
        using var gpus = Gpus.Open(GpuBackend.Simulated);
        var bytes = ForgedHandle(GpuBackend.Simulated);
        "../../etc/passwd"u8.CopyTo(bytes.AsSpan(16));
        bytes[16 + 16] = 0;

        Assert.ThrowsExactly<ArgumentException>(() => gpus.Devices[0].Import(IpcMemoryHandle.ReadFrom(bytes)));
    }

    [TestMethod]
    public void The_simulated_gpu_refuses_to_map_a_handle_of_its_own_process_as_cuda_does()
    {
        // A shared-memory allocation named for this process but not a live export here (e.g. one
        // whose exporter the registry no longer knows): the mapping layer must refuse it, as
        // cuIpcOpenMemHandle does in the exporting process, so a path that skips the alias fails on CI.
        string dir = Directory.CreateTempSubdirectory("faastube-own-").FullName;
        try
        {
            using var gpus = GpuSystem.Open(new GpuSystemOptions { Backend = GpuBackend.Simulated, SimulatedMemoryDirectory = dir });
            string path = SharedMemoryFile.PathOf(dir, Environment.ProcessId, Guid.NewGuid());
            using var file = SharedMemoryFile.Create(path, 4096, null);
            var bytes = ForgedHandle(GpuBackend.Simulated);
            BitConverter.GetBytes(4096L).CopyTo(bytes, 8);
            System.Text.Encoding.ASCII.GetBytes(Path.GetFileName(path)).CopyTo(bytes, 16);

            var error = Assert.ThrowsExactly<ArgumentException>(() => gpus.Devices[0].Import(IpcMemoryHandle.ReadFrom(bytes)));

            var cuda = Assert.IsInstanceOfType<FaaSTube.Native.CudaException>(error.InnerException);
            Assert.AreEqual(FaaSTube.Native.CudaResult.ErrorInvalidContext, cuda.Result);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [TestMethod]
    [DataRow(1)]
    [DataRow((5 << 20) + 3)] // more slots than the ring holds, and a remainder
    public async Task Pageable_host_copies_reach_the_gpu_only_through_pinned_staging(int length)
    {
        // CUDA runs a pageable cuMemcpy*Async synchronously, blocking the issuing (thread-pool)
        // thread; the stream must stage such copies, so the backend sees only page-locked memory.
        var random = Seeds.Create(TestContext);
        using var gpus = Gpus.Open(GpuBackend.Simulated, chunkBytes: 1 << 20);
        var machine = ((SimulatedGpuDevice)gpus.Devices[0]).Machine;
        var data = random.Bytes(length);
        var back = new byte[length];
        using var buffer = gpus.Devices[0].Allocate(length);
        using var stream = gpus.Devices[0].CreateStream();
        using var pinned = gpus.Devices[0].AllocatePinned(length);

        await stream.CopyAsync(data, buffer);
        await stream.CopyAsync(buffer, back.AsMemory());
        await stream.CopyAsync(buffer, pinned.Memory);

        Assert.AreEqual(0, machine.PageableHostCopies, "a pageable host pointer reached the stream");
        CollectionAssert.AreEqual(data, back);
        CollectionAssert.AreEqual(data, pinned.GetSpan().ToArray());
    }

    [TestMethod]
    public async Task A_cancelled_staged_copy_stops_between_slots_and_the_stream_stays_usable()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Gpus.Open(GpuBackend.Simulated);
        var machine = ((SimulatedGpuDevice)gpus.Devices[0]).Machine;
        var data = random.Bytes(GpuStream.StagingSlotBytes * 4);
        using var buffer = gpus.Devices[0].Allocate(data.Length);
        using var stream = gpus.Devices[0].CreateStream();
        await stream.FillAsync(buffer, 0);
        using var cts = new CancellationTokenSource();
        int copies = 0;
        machine.OnExecute = op =>
        {
            if (op.Kind == StreamOpKind.HostToDevice && Interlocked.Increment(ref copies) == 1)
            {
                cts.Cancel();
            }
        };

        await Assert.ThrowsAsync<OperationCanceledException>(async () => await stream.CopyAsync(data, buffer, cts.Token));
        machine.OnExecute = null;

        var back = new byte[data.Length];
        await stream.CopyAsync(buffer, back.AsMemory());
        int copied = copies * GpuStream.StagingSlotBytes;
        Assert.IsTrue(copies is >= 1 and <= GpuStream.StagingSlots, $"{copies} slots ran after the cancel");
        CollectionAssert.AreEqual(data[..copied], back[..copied]);
        Assert.IsTrue(back.AsSpan(copied).IndexOfAnyExcept((byte)0) < 0, "bytes past the cancelled slot were written");
    }
}
