using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.InteropServices;
using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Kernels;
using FaaSTube.Tests.Support;
using FaaSTube.Transfers;

namespace FaaSTube.Tests.Transfers;

/// <summary>The transfer engine on every backend: <see cref="SimulatedTransferTests"/> in CI, <see cref="CudaTransferTests"/> on CUDA.</summary>
public abstract class TransferEngineTests
{
    private protected const int Chunk = 64 << 10;

    /// <summary>0, 1, a chunk less one, a chunk, several chunks plus a remainder.</summary>
    private static readonly int[] Sizes = [0, 1, Chunk - 1, Chunk, 5 * Chunk + 17];

    public TestContext TestContext { get; set; } = null!;

    private protected abstract GpuBackend Backend { get; }

    public enum SourceKind { Pageable, Pinned, Sequence, Stream, Pipe, TypedInts }

    public enum SinkKind { Pageable, Pinned, Stream, Pipe, TypedInts }

    /// <summary>A GPU and its engine (64 KiB chunks, 1 MiB staging), disposed together.</summary>
    private protected sealed class Fixture : IAsyncDisposable
    {
        public Fixture(GpuBackend backend)
        {
            Gpus = Support.Gpus.Open(backend);
            Engine = new TransferEngine(Gpus.Devices[0], new TransferEngineOptions { ChunkBytes = Chunk, StagingBytes = 16 * Chunk });
        }

        public GpuSystem Gpus { get; }

        public TransferEngine Engine { get; }

        public GpuDevice Device => Gpus.Devices[0];

        public async ValueTask DisposeAsync()
        {
            await Engine.DisposeAsync();
            Gpus.Dispose();
        }
    }

    [TestMethod]
    [DataRow(SourceKind.Pageable)]
    [DataRow(SourceKind.Pinned)]
    [DataRow(SourceKind.Sequence)]
    [DataRow(SourceKind.Stream)]
    [DataRow(SourceKind.Pipe)]
    [DataRow(SourceKind.TypedInts)]
    public async Task Every_source_kind_reaches_the_gpu_byte_exact(SourceKind kind)
    {
        var random = Seeds.Create(TestContext);
        await using var f = new Fixture(Backend);
        var (gpus, engine, device) = (f.Gpus, f.Engine, f.Device);
        using var stream = device.CreateStream();
        foreach (int size in Sizes)
        {
            var data = random.Bytes(size & ~3); // whole ints for the typed source
            using var buffer = device.Allocate(data.Length + 64);
            var result = await ToDeviceAsync(engine, device, kind, data, buffer.Slice(0, data.Length));

            Assert.AreEqual((long)data.Length, result.Bytes);
            Assert.AreEqual(DataChecksum.Compute(data), await stream.ChecksumAsync(buffer.Slice(0, data.Length)), $"{kind}, {data.Length} bytes");
            Assert.AreEqual(data.Length > 0 && kind != SourceKind.Pinned, result.Staged, "pinned sources skip staging");
            Assert.AreEqual(engine.StagingSlots, engine.StagingSlotsAvailable, "the staging pool is whole");
        }
    }

    /// <summary>An engine opens nothing when built: its pinned staging is allocated by the first staged transfer (a pinned source needs none), once.</summary>
    [TestMethod]
    public async Task The_engine_pins_its_staging_at_the_first_staged_transfer_not_when_built()
    {
        var random = Seeds.Create(TestContext);
        await using var f = new Fixture(Backend);
        var (engine, device) = (f.Engine, f.Device);
        Assert.IsFalse(engine.StagingAllocated, "built: nothing pinned");
        Assert.AreEqual(engine.StagingSlots, engine.StagingSlotsAvailable, "and every slot counts as available");

        var data = random.Bytes(256 << 10);
        using var buffer = device.Allocate(data.Length);
        var pinned = await ToDeviceAsync(engine, device, SourceKind.Pinned, data, buffer);
        Assert.IsFalse(pinned.Staged);
        Assert.IsFalse(engine.StagingAllocated, "a pinned source moves without staging, so still nothing pinned");

        var staged = await ToDeviceAsync(engine, device, SourceKind.Pageable, data, buffer);
        Assert.IsTrue(staged.Staged);
        Assert.IsTrue(engine.StagingAllocated, "the first staged transfer pinned the staging");
        Assert.AreEqual(engine.StagingSlots, engine.StagingSlotsAvailable, "and gave every slot back");
        using var stream = device.CreateStream();
        Assert.AreEqual(DataChecksum.Compute(data), await stream.ChecksumAsync(buffer));
    }

    /// <summary>A node pins its engines' staging as it starts, so its clients' first Puts do not pay for it.</summary>
    [TestMethod]
    public async Task A_node_pins_its_engines_staging_as_it_starts()
    {
        await using var h = await NodeHarness.StartAsync();
        Assert.IsTrue(h.Node.Devices.All(d => d.Engine.StagingAllocated), "every GPU's engine pinned its staging at the node's start");
    }

    [TestMethod]
    [DataRow(SinkKind.Pageable)]
    [DataRow(SinkKind.Pinned)]
    [DataRow(SinkKind.Stream)]
    [DataRow(SinkKind.Pipe)]
    [DataRow(SinkKind.TypedInts)]
    public async Task Every_destination_kind_gets_the_gpu_bytes_exactly(SinkKind kind)
    {
        var random = Seeds.Create(TestContext);
        await using var f = new Fixture(Backend);
        var (gpus, engine, device) = (f.Gpus, f.Engine, f.Device);
        using var stream = device.CreateStream();
        foreach (int size in Sizes)
        {
            var data = random.Bytes(size & ~3);
            using var buffer = device.Allocate(data.Length + 64);
            await stream.CopyAsync(data, buffer.Slice(0, data.Length));

            var back = await ToHostAsync(engine, device, kind, buffer.Slice(0, data.Length));

            CollectionAssert.AreEqual(data, back, $"{kind}, {data.Length} bytes");
            Assert.AreEqual(engine.StagingSlots, engine.StagingSlotsAvailable);
        }
    }

    [TestMethod]
    public async Task Two_tenants_at_once_both_finish_with_their_own_data()
    {
        var random = Seeds.Create(TestContext);
        await using var f = new Fixture(Backend);
        var (gpus, engine, device) = (f.Gpus, f.Engine, f.Device);
        var bulk = random.Bytes(64 * Chunk + 5);
        var urgent = random.Bytes(8 * Chunk);
        using var bulkBuffer = device.Allocate(bulk.Length);
        using var urgentBuffer = device.Allocate(urgent.Length);

        var bulkTask = engine.ToDeviceAsync(bulk, bulkBuffer, new TransferRequest { Tenant = "bulk" }).AsTask();
        var urgentResult = await engine.ToDeviceAsync(urgent, urgentBuffer, new TransferRequest { Tenant = "urgent", Slo = TimeSpan.FromSeconds(30) });
        await bulkTask;
        var bulkBack = new byte[bulk.Length];
        var urgentBack = new byte[urgent.Length];
        await engine.ToHostAsync(bulkBuffer, bulkBack.AsMemory(), new TransferRequest { Tenant = "bulk" });
        await engine.ToHostAsync(urgentBuffer, urgentBack.AsMemory(), new TransferRequest { Tenant = "urgent" });

        Assert.AreEqual(true, urgentResult.DeadlineMet);
        CollectionAssert.AreEqual(bulk, bulkBack);
        CollectionAssert.AreEqual(urgent, urgentBack);
    }

    [TestMethod]
    public async Task A_rented_pinned_buffer_goes_straight_to_dma_and_is_reused()
    {
        var random = Seeds.Create(TestContext);
        await using var f = new Fixture(Backend);
        var (gpus, engine, device) = (f.Gpus, f.Engine, f.Device);
        using var buffer = gpus.Devices[0].Allocate(3 * Chunk + 5);
        var data = random.Bytes(3 * Chunk + 5);

        var rental = engine.RentPinned(data.Length);
        data.CopyTo(rental.Memory.Span);
        var result = await engine.ToDeviceAsync(rental.Memory, buffer);
        var first = rental.Memory;
        rental.Dispose();
        using var again = engine.RentPinned(data.Length - 100);

        Assert.IsFalse(result.Staged);
        Assert.AreEqual(data.Length, first.Length);
        Assert.IsTrue(again.Memory.Span.Overlaps(first.Span), "the same pinned memory is handed out again");
        var back = new byte[data.Length];
        await engine.ToHostAsync(buffer, back.AsMemory());
        CollectionAssert.AreEqual(data, back);
        Assert.ThrowsExactly<ObjectDisposedException>(() => rental.Memory);
    }

    [TestMethod]
    public async Task Progress_reports_every_byte_and_ends_at_the_length()
    {
        var random = Seeds.Create(TestContext);
        await using var f = new Fixture(Backend);
        var (gpus, engine, device) = (f.Gpus, f.Engine, f.Device);
        var data = random.Bytes(7 * Chunk + 3);
        using var buffer = gpus.Devices[0].Allocate(data.Length);
        var reports = new List<long>();
        var progress = new SynchronousProgress(reports);

        await engine.ToDeviceAsync(data, buffer, new TransferRequest { Progress = progress });

        lock (reports)
        {
            Assert.AreEqual(8, reports.Count, "one report per chunk");
            Assert.AreEqual((long)data.Length, reports.Max());
        }
    }

    [TestMethod]
    public async Task Bad_input_gets_clear_errors_and_the_staging_pool_stays_whole()
    {
        var f = new Fixture(Backend);
        using var _ = f.Gpus;
        var (gpus, engine, device) = (f.Gpus, f.Engine, f.Device);
        using var buffer = device.Allocate(4 * Chunk);

        await Assert.ThrowsAsync<ArgumentException>(async () => await engine.ToDeviceAsync(new byte[4 * Chunk + 1], buffer));
        await Assert.ThrowsAsync<ArgumentException>(async () => await engine.ToHostAsync(buffer, new byte[10].AsMemory()));
        await Assert.ThrowsAsync<ArgumentNullException>(async () => await engine.ToDeviceAsync((Stream)null!, buffer));
        var closed = new MemoryStream(new byte[4 * Chunk]);
        closed.Dispose();
        await Assert.ThrowsAsync<ArgumentException>(async () => await engine.ToDeviceAsync(closed, buffer));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await engine.ToDeviceAsync(new byte[10], buffer, new TransferRequest { Slo = TimeSpan.FromMilliseconds(-1) }));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await engine.ToDeviceAsync(new byte[10], buffer, new TransferRequest { Slo = TimeSpan.FromMilliseconds(5), ComputeTime = TimeSpan.FromMilliseconds(5) }));
        await Assert.ThrowsAsync<OperationCanceledException>(async () => await engine.ToDeviceAsync(new byte[10], buffer, cancellationToken: new CancellationToken(true)));

        // A stream shorter than the destination: the chunks before the end are written, then a clear error.
        var error = await Assert.ThrowsAsync<EndOfStreamException>(async () => await engine.ToDeviceAsync(new MemoryStream(new byte[2 * Chunk + 10]), buffer));
        StringAssert.Contains(error.Message, "stream ended");
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(new byte[100]);
        await pipe.Writer.CompleteAsync();
        await Assert.ThrowsAsync<EndOfStreamException>(async () => await engine.ToDeviceAsync(pipe.Reader, buffer));
        Assert.AreEqual(engine.StagingSlots, engine.StagingSlotsAvailable, "no slot leaked by the failures");

        var disposed = device.Allocate(Chunk);
        disposed.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await engine.ToDeviceAsync(new byte[Chunk], disposed));
        using var other = Gpus.Open(Backend);
        using var foreign = other.Devices[0].Allocate(Chunk);
        await Assert.ThrowsAsync<ArgumentException>(async () => await engine.ToDeviceAsync(new byte[Chunk], foreign));

        await engine.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await engine.ToDeviceAsync(new byte[10], buffer));
    }

    private static async Task<TransferResult> ToDeviceAsync(TransferEngine engine, GpuDevice device, SourceKind kind, byte[] data, DeviceMemory destination)
    {
        switch (kind)
        {
            case SourceKind.Pinned:
                using (var pinned = device.AllocatePinned(Math.Max(1, data.Length)))
                {
                    data.CopyTo(pinned.GetSpan());
                    return await engine.ToDeviceAsync(pinned.Memory[..data.Length], destination);
                }

            case SourceKind.Sequence:
                return await engine.ToDeviceAsync(Segments(data, 3001), destination);
            case SourceKind.Stream:
                return await engine.ToDeviceAsync(new MemoryStream(data), destination);
            case SourceKind.Pipe:
                var pipe = new Pipe();
                var writer = Task.Run(async () =>
                {
                    for (int off = 0; off < data.Length; off += 7777)
                    {
                        await pipe.Writer.WriteAsync(data.AsMemory(off, Math.Min(7777, data.Length - off)));
                    }

                    await pipe.Writer.CompleteAsync();
                });
                var result = await engine.ToDeviceAsync(pipe.Reader, destination);
                await writer;
                return result;
            case SourceKind.TypedInts:
                return await engine.ToDeviceAsync<int>(MemoryMarshal.Cast<byte, int>(data).ToArray(), destination);
            default:
                return await engine.ToDeviceAsync(data, destination);
        }
    }

    private static async Task<byte[]> ToHostAsync(TransferEngine engine, GpuDevice device, SinkKind kind, DeviceMemory source)
    {
        int n = (int)source.Length;
        switch (kind)
        {
            case SinkKind.Pinned:
                using (var pinned = device.AllocatePinned(Math.Max(1, n)))
                {
                    var r = await engine.ToHostAsync(source, pinned.Memory[..n]);
                    Assert.IsFalse(r.Staged && n > 0, "pinned destinations skip staging");
                    return pinned.GetSpan()[..n].ToArray();
                }

            case SinkKind.Stream:
                var ms = new MemoryStream();
                await engine.ToHostAsync(source, ms);
                return ms.ToArray();
            case SinkKind.Pipe:
                var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
                await engine.ToHostAsync(source, pipe.Writer);
                await pipe.Writer.CompleteAsync();
                var read = await pipe.Reader.ReadAtLeastAsync(n);
                var bytes = read.Buffer.ToArray();
                pipe.Reader.AdvanceTo(read.Buffer.End);
                return bytes;
            case SinkKind.TypedInts:
                var ints = new int[n / 4];
                await engine.ToHostAsync<int>(source, ints);
                return MemoryMarshal.AsBytes(ints.AsSpan()).ToArray();
            default:
                var back = new byte[n];
                await engine.ToHostAsync(source, back.AsMemory());
                return back;
        }
    }

    /// <summary>The bytes as a sequence of segments of <paramref name="segment"/> bytes.</summary>
    private static ReadOnlySequence<byte> Segments(byte[] data, int segment)
    {
        if (data.Length == 0)
        {
            return ReadOnlySequence<byte>.Empty;
        }

        Segment first = new(data.AsMemory(0, Math.Min(segment, data.Length)), 0), last = first;
        for (int off = segment; off < data.Length; off += segment)
        {
            last = last.Append(data.AsMemory(off, Math.Min(segment, data.Length - off)));
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }

    /// <summary>Records reports on the reporting thread (Progress&lt;T&gt; would post them later).</summary>
    private protected sealed class SynchronousProgress(List<long> reports, Action<long>? also = null) : IProgress<long>
    {
        public void Report(long value)
        {
            lock (reports)
            {
                reports.Add(value);
            }

            also?.Invoke(value);
        }
    }
}

/// <summary>The transfer engine on the simulated GPU, plus what only the simulation can do (fault injection, the link model).</summary>
[TestClass]
public sealed class SimulatedTransferTests : TransferEngineTests
{
    private protected override GpuBackend Backend => GpuBackend.Simulated;

    [TestMethod]
    public async Task Cancellation_stops_at_a_chunk_boundary_finished_chunks_stay_the_rest_is_untouched()
    {
        var random = Seeds.Create(TestContext);
        await using var f = new Fixture(Backend);
        var (gpus, engine, device) = (f.Gpus, f.Engine, f.Device);
        const int Chunks = 64;
        var data = random.Bytes(Chunks * Chunk);
        using var buffer = device.Allocate(data.Length);
        using var stream = device.CreateStream();
        await stream.FillAsync(buffer, 0xEE);
        using var cts = new CancellationTokenSource();
        var reports = new List<long>();

        await Assert.ThrowsAsync<OperationCanceledException>(async () =>
            await engine.ToDeviceAsync(data, buffer, new TransferRequest { Progress = new SynchronousProgress(reports, _ => cts.Cancel()) }, cts.Token));

        var back = new byte[data.Length];
        await stream.CopyAsync(buffer, back.AsMemory());
        int copied = 0;
        for (int c = 0; c < Chunks; c++)
        {
            var got = back.AsSpan(c * Chunk, Chunk);
            bool isData = got.SequenceEqual(data.AsSpan(c * Chunk, Chunk));
            bool untouched = got.IndexOfAnyExcept((byte)0xEE) < 0;
            Assert.IsTrue(isData || untouched, $"chunk {c} is partly written");
            copied += isData ? 1 : 0;
        }

        TestContext.WriteLine($"{copied} of {Chunks} chunks were written before the cancellation took effect");
        Assert.IsTrue(copied >= 1 && copied < Chunks);
        lock (reports)
        {
            Assert.AreEqual((long)copied * Chunk, reports.Max(), "progress counts exactly the finished chunks");
        }

        Assert.AreEqual(engine.StagingSlots, engine.StagingSlotsAvailable);
    }

    [TestMethod]
    public async Task A_failed_chunk_fails_the_transfer_with_its_error_and_the_engine_goes_on()
    {
        var random = Seeds.Create(TestContext);
        await using var f = new Fixture(Backend);
        var (gpus, engine, device) = (f.Gpus, f.Engine, f.Device);
        var machine = ((SimulatedGpuDevice)gpus.Devices[0]).Machine;
        var data = random.Bytes(16 * Chunk);
        using var buffer = gpus.Devices[0].Allocate(data.Length);
        int seen = 0;
        machine.OnExecute = op =>
        {
            if (op.Kind == StreamOpKind.HostToDevice && Interlocked.Increment(ref seen) == 5)
            {
                throw new IOException("injected PCIe error");
            }
        };

        var error = await Assert.ThrowsAsync<IOException>(async () => await engine.ToDeviceAsync(data, buffer));
        machine.OnExecute = null;

        Assert.AreEqual("injected PCIe error", error.Message);
        Assert.AreEqual(engine.StagingSlots, engine.StagingSlotsAvailable, "slots of the failed transfer came back");
        await engine.ToDeviceAsync(data, buffer);
        using var stream = gpus.Devices[0].CreateStream();
        Assert.AreEqual(DataChecksum.Compute(data), await stream.ChecksumAsync(buffer));
    }

    [TestMethod]
    public async Task A_small_urgent_transfer_meets_its_deadline_beside_a_bulk_one_under_the_link_model()
    {
        var random = Seeds.Create(TestContext);
        var clock = new VirtualClock();
        using var gpus = Gpus.Open(GpuBackend.Simulated, clock: clock);
        await using var engine = new TransferEngine(gpus.Devices[0], new TransferEngineOptions(), router: null, FaaSTube.Hosting.FaaSTubeServices.From(null, null, clock)); // 2 MiB chunks, 64 MiB staging
        var device = gpus.Devices[0];
        var bulk = random.Bytes(256 << 20);
        var urgent = random.Bytes(8 << 20);
        using var bulkBuffer = device.Allocate(bulk.Length);
        using var urgentBuffer = device.Allocate(urgent.Length);

        var bulkTask = engine.ToDeviceAsync(bulk, bulkBuffer, new TransferRequest { Tenant = "bulk" }).AsTask();
        // 2 MiB chunks at 55 GB/s take 38 us; the 16 already in flight and the urgent 8 MiB take under 1 ms.
        // The SLO leaves room for a starved CI machine; first come first served would take the bulk's ~5 ms.
        var urgentResult = await engine.ToDeviceAsync(urgent, urgentBuffer, new TransferRequest { Tenant = "urgent", Slo = TimeSpan.FromMilliseconds(3) });
        var bulkResult = await bulkTask;

        TestContext.WriteLine($"urgent {urgentResult.Elapsed.TotalMilliseconds:F3} ms, bulk {bulkResult.Elapsed.TotalMilliseconds:F3} ms (modelled)");
        Assert.AreEqual(true, urgentResult.DeadlineMet, $"the urgent transfer took {urgentResult.Elapsed.TotalMilliseconds:F3} ms of its 3 ms");
        // The model charges each 2 MiB chunk the link's latency too: busy time is bytes / bandwidth + chunks x latency.
        int chunks = (bulk.Length + urgent.Length) / (2 << 20);
        var busy = TimeSpan.FromSeconds((bulk.Length + urgent.Length) / gpus.Topology.HostBytesPerSecond) + chunks * gpus.Topology.LinkLatency;
        Assert.IsLessThan(busy * 1.02, clock.Now, $"the link stayed busy (work-conserving): {clock.Now.TotalMilliseconds:F3} ms for {busy.TotalMilliseconds:F3} ms of work");
        using var stream = device.CreateStream();
        Assert.AreEqual(DataChecksum.Compute(urgent), await stream.ChecksumAsync(urgentBuffer));
        Assert.AreEqual(DataChecksum.Compute(bulk), await stream.ChecksumAsync(bulkBuffer));
    }

    [TestMethod]
    public async Task Oversubscription_raises_an_event_and_marks_the_degraded_transfer()
    {
        var clock = new VirtualClock();
        using var gpus = Gpus.Open(GpuBackend.Simulated, clock: clock);
        await using var engine = new TransferEngine(gpus.Devices[0], new TransferEngineOptions { ChunkBytes = 1 << 20 }, router: null, FaaSTube.Hosting.FaaSTubeServices.From(null, null, clock));
        using var a = gpus.Devices[0].Allocate(64 << 20);
        using var b = gpus.Devices[0].Allocate(64 << 20);
        var events = new List<LaneOversubscribedEventArgs>();
        engine.Oversubscribed += (_, e) => { lock (events) { events.Add(e); } };

        // 64 MiB in 1 ms each needs 67 GB/s; together 134 GB/s on a 55 GB/s link.
        var low = engine.ToDeviceAsync(new byte[64 << 20], a, new TransferRequest { Tenant = "low", Slo = TimeSpan.FromMilliseconds(1), Priority = 0 }).AsTask();
        var high = engine.ToDeviceAsync(new byte[64 << 20], b, new TransferRequest { Tenant = "high", Slo = TimeSpan.FromMilliseconds(1), Priority = 9 }).AsTask();
        var results = await Task.WhenAll(low, high);

        lock (events)
        {
            Assert.IsTrue(events.Any(e => e.Oversubscribed && e.Direction == LaneDirection.HostToDevice));
        }

        Assert.IsTrue(results[0].Degraded || results[1].Degraded, "someone was degraded, and it was said");
        Assert.IsFalse(results[1].Degraded && !results[0].Degraded, "the lower priority degrades first");
    }
}

/// <summary>The transfer engine on a real GPU (Inconclusive where there is no CUDA).</summary>
[TestClass]
[TestCategory("Gpu")]
public sealed class CudaTransferTests : TransferEngineTests
{
    private protected override GpuBackend Backend => GpuBackend.Cuda;
}
