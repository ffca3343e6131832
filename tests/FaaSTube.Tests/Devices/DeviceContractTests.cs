using FaaSTube.Devices;
using FaaSTube.Kernels;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Devices;

/// <summary>
/// The device layer's contract, run on every backend: <see cref="SimulatedDeviceTests"/> in CI and
/// <see cref="CudaDeviceTests"/> (category Gpu) on a CUDA machine.
/// </summary>
public abstract class DeviceContractTests
{
    public TestContext TestContext { get; set; } = null!;

    private protected abstract GpuBackend Backend { get; }

    private GpuSystem Open(long chunkBytes = 64L << 20) => Gpus.Open(Backend, chunkBytes: chunkBytes);

    [TestMethod]
    [DataRow(1L)]
    [DataRow(4093L)]
    [DataRow(1L << 20)]
    [DataRow((3L << 20) + 13)]
    public async Task Host_to_device_to_host_round_trip_is_byte_exact(long length)
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Open(chunkBytes: 1L << 20); // several chunks plus a remainder at the larger sizes
        var device = gpus.Devices[0];
        var source = random.Bytes(length);
        var back = new byte[length];
        using var buffer = device.Allocate(length);
        using var stream = device.CreateStream();

        await stream.CopyAsync(source, buffer);
        await stream.CopyAsync(buffer, back.AsMemory());

        CollectionAssert.AreEqual(source, back);
    }

    [TestMethod]
    public async Task Zero_length_copies_complete_at_once()
    {
        using var gpus = Open();
        using var buffer = gpus.Devices[0].Allocate(16);
        using var stream = gpus.Devices[0].CreateStream();

        await stream.CopyAsync(ReadOnlyMemory<byte>.Empty, buffer.Slice(8, 0));
        await stream.CopyAsync(buffer.Slice(0, 0), Memory<byte>.Empty);
        Assert.AreEqual(0UL, await stream.ChecksumAsync(buffer.Slice(3, 0)) ^ DataChecksum.Compute([]));
    }

    [TestMethod]
    public async Task Device_to_device_copy_between_offsets_moves_exactly_the_range()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Open(chunkBytes: 64 << 10);
        var device = gpus.Devices[0];
        const int Length = (1 << 20) + 77;
        var data = random.Bytes(Length);
        using var a = device.Allocate(Length);
        using var b = device.Allocate(Length + 4096);
        using var stream = device.CreateStream();
        await stream.FillAsync(b, 0xAB);
        await stream.CopyAsync(data, a);

        await stream.CopyAsync(a.Slice(5, Length - 5), b.Slice(1000, Length - 5));
        var back = new byte[Length + 4096];
        await stream.CopyAsync(b, back.AsMemory());

        Assert.IsTrue(back.AsSpan(0, 1000).IndexOfAnyExcept((byte)0xAB) < 0, "bytes before the range were touched");
        CollectionAssert.AreEqual(data[5..], back[1000..(1000 + Length - 5)]);
        Assert.IsTrue(back.AsSpan(1000 + Length - 5).IndexOfAnyExcept((byte)0xAB) < 0, "bytes after the range were touched");
    }

    [TestMethod]
    public async Task Pinned_and_registered_host_memory_round_trip()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Open();
        var device = gpus.Devices[0];
        const int Length = (2 << 20) + 3;
        using var pinned = device.AllocatePinned(Length);
        random.NextBytes(pinned.GetSpan());
        var expected = pinned.GetSpan().ToArray();
        using var buffer = device.Allocate(Length);
        using var stream = device.CreateStream();
        await stream.CopyAsync(pinned.Memory, buffer);

        unsafe
        {
            var native = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(Length, 4096);
            try
            {
                using var registered = device.RegisterHostMemory((nint)native, Length);
                Assert.IsTrue(registered.IsRegistered);
                stream.CopyAsync(buffer, registered.Memory).AsTask().GetAwaiter().GetResult();
                CollectionAssert.AreEqual(expected, registered.GetSpan().ToArray());
            }
            finally
            {
                System.Runtime.InteropServices.NativeMemory.AlignedFree(native);
            }
        }
    }

    [TestMethod]
    public async Task Fill_pattern_kernel_matches_the_cpu_pattern()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Open();
        var device = gpus.Devices[0];
        const int Length = (1 << 20) + 11;
        ulong seed = (ulong)random.NextInt64();
        using var buffer = device.Allocate(Length + 3);
        using var stream = device.CreateStream();
        await stream.FillPatternAsync(buffer.Slice(3, Length), seed); // unaligned start
        var back = new byte[Length];
        await stream.CopyAsync(buffer.Slice(3, Length), back.AsMemory());

        var expected = new byte[Length];
        DataPattern.Fill(expected, seed);
        CollectionAssert.AreEqual(expected, back);
    }

    [TestMethod]
    [DataRow(1)]
    [DataRow(8)]
    [DataRow(1001)]
    [DataRow((4 << 20) + 5)]
    public async Task Checksum_kernel_matches_the_cpu_checksum(int length)
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Open();
        var device = gpus.Devices[0];
        var data = random.Bytes(length);
        using var buffer = device.Allocate(length + 1);
        using var stream = device.CreateStream();
        await stream.CopyAsync(data, buffer.Slice(1, length));

        ulong onGpu = await stream.ChecksumAsync(buffer.Slice(1, length));

        Assert.AreEqual(DataChecksum.Compute(data), onGpu);
    }

    [TestMethod]
    public async Task Checksum_changes_when_one_byte_changes()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Open();
        var device = gpus.Devices[0];
        var data = random.Bytes(100_000);
        using var buffer = device.Allocate(data.Length);
        using var stream = device.CreateStream();
        await stream.CopyAsync(data, buffer);
        ulong before = await stream.ChecksumAsync(buffer);
        int at = random.Next(data.Length);
        await stream.FillAsync(buffer.Slice(at, 1), (byte)(data[at] ^ 0x10));

        Assert.AreNotEqual(before, await stream.ChecksumAsync(buffer));
    }

    [TestMethod]
    public async Task Cancelled_before_start_throws_and_leaves_the_destination_untouched()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Open();
        var device = gpus.Devices[0];
        using var buffer = device.Allocate(4096);
        using var stream = device.CreateStream();
        await stream.FillAsync(buffer, 0x5A);

        await Assert.ThrowsAsync<OperationCanceledException>(
            async () => await stream.CopyAsync(random.Bytes(4096), buffer, new CancellationToken(canceled: true)));

        var back = new byte[4096];
        await stream.CopyAsync(buffer, back.AsMemory());
        Assert.IsTrue(back.AsSpan().IndexOfAnyExcept((byte)0x5A) < 0);
    }

    [TestMethod]
    public async Task Using_a_disposed_buffer_stream_or_device_throws_ObjectDisposed()
    {
        using var gpus = Open();
        var device = gpus.Devices[0];
        var buffer = device.Allocate(64);
        var stream = device.CreateStream();
        buffer.Dispose();
        buffer.Dispose(); // double dispose is harmless

        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await stream.CopyAsync(new byte[64], buffer));
        Assert.ThrowsExactly<ObjectDisposedException>(() => device.Export(buffer));
        stream.Dispose();
        stream.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await stream.SynchronizeAsync());
        device.Dispose();
        device.Dispose();
        Assert.ThrowsExactly<ObjectDisposedException>(() => device.Allocate(64));
        Assert.ThrowsExactly<ObjectDisposedException>(() => device.CreateStream());
    }

    [TestMethod]
    public async Task Buffers_and_streams_outlive_their_disposed_device()
    {
        var random = Seeds.Create(TestContext);
        var gpus = Open();
        var device = gpus.Devices[0];
        var buffer = device.Allocate(10_000);
        var stream = device.CreateStream();
        gpus.Dispose(); // the device first: its context must live on for the buffer and stream

        var data = random.Bytes(10_000);
        await stream.CopyAsync(data, buffer);
        Assert.AreEqual(DataChecksum.Compute(data), await stream.ChecksumAsync(buffer));
        stream.Dispose();
        buffer.Dispose();
    }

    [TestMethod]
    public async Task Bad_ranges_and_mismatched_lengths_are_rejected()
    {
        using var gpus = Open();
        var device = gpus.Devices[0];
        using var buffer = device.Allocate(100);
        using var stream = device.CreateStream();

        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => buffer.Slice(90, 11));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => buffer.Slice(-1, 1));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => device.Allocate(0));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => device.CreateStream(-1));
        await Assert.ThrowsAsync<ArgumentException>(async () => await stream.CopyAsync(new byte[99], buffer));
        await Assert.ThrowsAsync<ArgumentException>(async () => await stream.CopyAsync(buffer, new byte[101].AsMemory()));
    }

    [TestMethod]
    public void Ipc_handles_round_trip_through_bytes_and_reject_garbage()
    {
        using var gpus = Open();
        var device = gpus.Devices[0];
        using var buffer = device.Allocate(4096);
        var handle = device.Export(buffer);

        var bytes = new byte[IpcMemoryHandle.Size];
        handle.WriteTo(bytes);
        Assert.AreEqual(handle, IpcMemoryHandle.ReadFrom(bytes));
        Assert.AreEqual(handle, IpcMemoryHandle.Parse(handle.ToString()));
        Assert.AreEqual(4096L, handle.Length);
        Assert.ThrowsExactly<FormatException>(() => IpcMemoryHandle.ReadFrom(new byte[IpcMemoryHandle.Size]));
        Assert.ThrowsExactly<FormatException>(() => IpcMemoryHandle.ReadFrom(bytes.AsSpan(0, 20)));
        bytes[0] = 77;
        Assert.ThrowsExactly<FormatException>(() => IpcMemoryHandle.ReadFrom(bytes));
    }

    [TestMethod]
    public async Task A_child_process_reads_and_writes_an_exported_allocation()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Open();
        var device = gpus.Devices[0];
        const int Half = (1 << 20) + 9;
        var data = random.Bytes(Half);
        ulong seed = (ulong)random.NextInt64();
        using var buffer = device.Allocate(2 * Half);
        using var stream = device.CreateStream();
        await stream.CopyAsync(data, buffer.Slice(0, Half));
        await stream.SynchronizeAsync();

        using var child = ChildProcess.Start(
            "import", Backend.ToString(), "-", device.Export(buffer).ToString(),
            Half.ToString(), DataChecksum.Compute(data).ToString(), Half.ToString(), Half.ToString(), seed.ToString());
        var (exit, output) = await child.WaitAsync();

        Assert.AreEqual(0, exit, output);
        var expected = new byte[Half];
        DataPattern.Fill(expected, seed);
        var back = new byte[2 * Half];
        await stream.CopyAsync(buffer, back.AsMemory());
        CollectionAssert.AreEqual(data, back[..Half], "the child must not change what it only read");
        CollectionAssert.AreEqual(expected, back[Half..], "the child's writes must be visible to the exporter");
    }

    [TestMethod]
    public async Task A_child_killed_while_holding_a_mapping_does_not_break_the_exporter()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Open();
        var device = gpus.Devices[0];
        var data = random.Bytes(1 << 20);
        using var buffer = device.Allocate(data.Length);
        using var stream = device.CreateStream();
        await stream.CopyAsync(data, buffer);
        await stream.SynchronizeAsync();

        using (var child = ChildProcess.Start("hold", Backend.ToString(), "-", device.Export(buffer).ToString()))
        {
            Assert.AreEqual("ready", await child.ReadLineAsync());
            await child.KillAsync();
        }

        Assert.AreEqual(DataChecksum.Compute(data), await stream.ChecksumAsync(buffer));
        await stream.FillAsync(buffer.Slice(0, 10), 1);
        var head = new byte[10];
        await stream.CopyAsync(buffer.Slice(0, 10), head.AsMemory());
        Assert.IsTrue(head.AsSpan().IndexOfAnyExcept((byte)1) < 0);
    }

    [TestMethod]
    public async Task An_import_of_a_handle_this_process_exported_is_an_alias_of_the_local_memory()
    {
        // CUDA refuses cuIpcOpenMemHandle in the exporting process (and so does the simulated GPU):
        // Import must give back the local memory for every caller that imports (client, pool, tests).
        var random = Seeds.Create(TestContext);
        using var gpus = Open();
        var device = gpus.Devices[0];
        var data = random.Bytes(64 << 10);
        var buffer = device.Allocate(data.Length);
        using var stream = device.CreateStream();
        await stream.CopyAsync(data, buffer);
        var handle = IpcMemoryHandle.ReadFrom(HandleBytes(device.Export(buffer))); // as received over a socket

        var alias = device.Import(handle);

        Assert.IsTrue(alias.IsImported);
        Assert.IsTrue(alias.IsAlias);
        Assert.AreEqual(buffer.Address, alias.Address, "an alias is the same memory, not a second mapping");
        Assert.AreEqual(DataChecksum.Compute(data), await stream.ChecksumAsync(alias));
        buffer.Dispose(); // the exporter lets go first: the alias keeps the memory
        await stream.FillAsync(alias.Slice(0, 8), 7);
        var head = new byte[8];
        await stream.CopyAsync(alias.Slice(0, 8), head.AsMemory());
        CollectionAssert.AreEqual(Enumerable.Repeat((byte)7, 8).ToArray(), head);
        alias.Dispose();
        Assert.ThrowsExactly<ArgumentException>(() => device.Import(handle), "once both are gone the handle names nothing");
    }

    private static byte[] HandleBytes(IpcMemoryHandle handle)
    {
        var bytes = new byte[IpcMemoryHandle.Size];
        handle.WriteTo(bytes);
        return bytes;
    }

    [TestMethod]
    public void Importing_a_handle_of_another_backend_is_rejected()
    {
        using var gpus = Open();
        var other = Backend == GpuBackend.Cuda ? GpuBackend.Simulated : GpuBackend.Cuda;
        var foreign = IpcMemoryHandle.ReadFrom(ForgedHandle(other));

        Assert.ThrowsExactly<ArgumentException>(() => gpus.Devices[0].Import(foreign));
    }

    [TestMethod]
    public void A_buffer_of_another_system_cannot_be_exported_by_this_one()
    {
        using var gpus = Open();
        using var other = Open();
        using var buffer = other.Devices[0].Allocate(64);

        Assert.ThrowsExactly<ArgumentException>(() => gpus.Devices[0].Export(buffer));
    }

    [TestMethod]
    public async Task A_wrapped_stream_runs_in_order_with_the_stream_it_wraps_and_destroys_nothing()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Open(chunkBytes: 256 << 10);
        var device = gpus.Devices[0];
        long length = (2L << 20) + random.Next(1, 4096);
        ulong seed = (ulong)random.NextInt64(1, long.MaxValue - 1);
        using var buffer = device.Allocate(length);
        using var owner = device.CreateStream();
        Assert.IsTrue(owner.OwnsNativeHandle);

        var wrapped = device.WrapStream(owner.NativeHandle);
        Assert.IsFalse(wrapped.OwnsNativeHandle);
        Assert.AreEqual(owner.NativeHandle, wrapped.NativeHandle);
        Assert.AreSame(device, wrapped.Device);
        using var reader = device.CreateStream(); // a third, independent stream: it sees only what has completed
        var pattern = owner.FillPatternAsync(buffer, seed); // issued elsewhere, not awaited
        await wrapped.SynchronizeAsync();
        Assert.AreEqual(PoolHarness.Expected(length, seed), await reader.ChecksumAsync(buffer), "the wrapper's synchronisation covers what the owner issued");
        await pattern;

        var refill = wrapped.FillPatternAsync(buffer, seed + 1); // the wrapper's work goes on the borrowed stream...
        await owner.SynchronizeAsync();                         // ...so the owner's synchronisation covers it
        Assert.AreEqual(PoolHarness.Expected(length, seed + 1), await reader.ChecksumAsync(buffer));
        await refill;

        wrapped.Dispose();
        Assert.AreEqual(PoolHarness.Expected(length, seed + 1), await owner.ChecksumAsync(buffer), "disposing the wrapper leaves the stream it borrowed working");
        Assert.ThrowsExactly<ObjectDisposedException>(() => wrapped.NativeHandle);
    }

    [TestMethod]
    public void Wrapping_checks_that_the_stream_is_of_this_device()
    {
        using var gpus = Open();
        using var other = Open();
        using var stream = other.Devices[0].CreateStream();

        if (Backend == GpuBackend.Simulated)
        {
            Assert.AreEqual(0, gpus.Devices[0].NativeContext);
            Assert.ThrowsExactly<ArgumentException>(() => gpus.Devices[0].WrapStream(stream.NativeHandle)); // another system's device
            Assert.ThrowsExactly<ArgumentException>(() => gpus.Devices[0].WrapStream(unchecked((nint)0x7ead_beef_0000)));
            stream.Dispose();
            Assert.ThrowsExactly<ArgumentException>(() => other.Devices[0].WrapStream(0)); // no stream 0 on the simulated GPU
        }
        else
        {
            // CUDA: the same ordinal is the same primary context in every GpuSystem of a process, so
            // another system's stream is this device's too (a garbage CUstream cannot be tested: the
            // driver dereferences it).
            Assert.AreNotEqual(0, gpus.Devices[0].NativeContext);
            Assert.AreEqual(gpus.Devices[0].NativeContext, other.Devices[0].NativeContext);
            using var wrapped = gpus.Devices[0].WrapStream(stream.NativeHandle);
            Assert.AreEqual(stream.NativeHandle, wrapped.NativeHandle);
        }
    }

    private protected static byte[] ForgedHandle(GpuBackend backend)
    {
        var bytes = new byte[IpcMemoryHandle.Size];
        bytes[0] = (byte)backend;
        bytes[8] = 64;
        "faastube-sim.1.0000"u8.CopyTo(bytes.AsSpan(16));
        return bytes;
    }
}
