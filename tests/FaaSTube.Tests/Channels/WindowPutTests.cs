using FaaSTube.Channels;
using FaaSTube.Kernels;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// The host-data path through the window's slots: a Put from window memory (a rented buffer, the
/// streaming writer) copies nothing on the host; a Put or Get through ordinary memory copies each
/// byte once; slots are shared by concurrent calls and all come back, whatever happened.
/// </summary>
[TestClass]
public sealed class WindowPutTests
{
    private const int Window = 2 << 20; // NodeHarness's default window: four 512 KiB slots

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public async Task A_put_from_a_rented_window_buffer_round_trips_and_copies_no_host_bytes(bool inProcess)
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var producer = await h.ConnectAsync(inProcess);
        var consumer = await h.ConnectAsync(inProcess);
        var data = random.Bytes(random.Next(1, producer.MaxWindowBufferLength + 1));
        TestContext.WriteLine($"{data.Length} bytes");

        var buffer = await producer.RentWindowAsync(data.Length);
        Assert.AreEqual(data.Length, buffer.Length);
        data.CopyTo(buffer.Memory.Span); // the producer writing its output in place
        var id = await producer.PutAsync(buffer);

        Assert.AreEqual(0L, producer.HostBytesCopied, "a Put from window memory copies nothing on the host");
        Assert.AreEqual(0, producer.WindowSlotsInUse, "the range went back once the node had read it");
        await using var got = await consumer.GetAsync(id);
        using var stream = got.Device.CreateStream();
        Assert.AreEqual(DataChecksum.Compute(data), await stream.ChecksumAsync(got.Memory));
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public async Task A_get_into_window_memory_copies_no_host_bytes_and_refuses_what_the_window_cannot_hold(bool inProcess)
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var producer = await h.ConnectAsync(inProcess);
        var consumer = await h.ConnectAsync(inProcess);
        var data = random.Bytes(random.Next(1, consumer.MaxWindowBufferLength + 1));
        TestContext.WriteLine($"{data.Length} bytes");
        var id = await producer.PutAsync(data);

        using (var got = await consumer.GetToWindowAsync(id))
        {
            Assert.AreEqual(data.Length, got.Length);
            Assert.AreEqual(DataChecksum.Compute(data), DataChecksum.Compute(got.Memory.Span), "the node's DMA, read in place");
            Assert.AreEqual(0L, consumer.HostBytesCopied, "a Get into window memory copies nothing on the host");
            Assert.IsGreaterThan(0, consumer.WindowSlotsInUse, "the range is the caller's until it disposes the buffer");
        }

        Assert.AreEqual(0, consumer.WindowSlotsInUse);
        await consumer.FlushAsync();
        Assert.AreEqual(TubeError.NotFound, (await Assert.ThrowsAsync<TubeException>(async () => await consumer.WhereAsync(id))).Error, "its one consumer was done: freed");

        var large = await producer.PutAsync(random.Bytes(consumer.MaxWindowBufferLength + 1));
        await Assert.ThrowsAsync<ArgumentException>(async () => await consumer.GetToWindowAsync(large));
        await consumer.FlushAsync();
        Assert.AreEqual(0, consumer.WindowSlotsInUse);
        Assert.AreEqual(0L, h.Node.PoolOf(0).GetStatistics().InUseBytes, "the refused Get's lease was released");
    }

    [TestMethod]
    public async Task The_streaming_writer_puts_data_several_windows_long_in_random_chunks_without_a_host_copy()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var producer = await h.ConnectAsync(inProcess: false);
        var consumer = await h.ConnectAsync(inProcess: false);
        var data = random.Bytes(5L * Window + random.Next(1, Window));

        await using var writer = await producer.CreatePutWriterAsync(data.Length);
        int chunks = 0;
        while (writer.Written < writer.Length)
        {
            await writer.FlushAsync();
            var span = writer.GetSpan(random.Next(0, producer.WindowSlotLength + 1));
            int n = random.Next(1, span.Length + 1);
            data.AsSpan((int)writer.Written, n).CopyTo(span);
            writer.Advance(n);
            chunks++;
        }

        var id = await writer.CompleteAsync();
        TestContext.WriteLine($"{data.Length} bytes in {chunks} chunks");

        Assert.AreEqual(0L, producer.HostBytesCopied, "the writer's parts are DMA'd from the window");
        Assert.AreEqual(0, producer.WindowSlotsInUse);
        var back = new byte[data.Length];
        Assert.AreEqual((long)data.Length, await consumer.GetAsync(id, back.AsMemory()));
        Assert.AreEqual(DataChecksum.Compute(data), DataChecksum.Compute(back));
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await writer.FlushAsync(), "completed");
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public async Task Put_and_get_through_ordinary_memory_round_trip_from_one_byte_to_several_windows(bool inProcess)
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var client = await h.ConnectAsync(inProcess);
        int slot = client.WindowSlotLength;
        int[] sizes = [1, 4095, 4096, 4097, slot - 1, slot, slot + 1, Window, Window + 1, random.Next(1, 4 * Window), random.Next(1, 4 * Window)];
        long copied = 0;
        foreach (int size in sizes)
        {
            var data = random.Bytes(size);
            var id = await client.PutAsync(data, new PutOptions { Consumers = 1 });
            var back = new byte[size + 3];
            Assert.AreEqual((long)size, await client.GetAsync(id, back.AsMemory()));

            Assert.AreEqual(DataChecksum.Compute(data), DataChecksum.Compute(back.AsSpan(0, size)), $"{size} bytes");
            copied += 2L * size;
            Assert.AreEqual(copied, client.HostBytesCopied, $"{size} bytes: copied into the window once and out once");
        }

        Assert.AreEqual(0, client.WindowSlotsInUse);
        await client.FlushAsync(); // each Get's release went one way
        Assert.AreEqual(0L, h.Node.PoolOf(0).GetStatistics().InUseBytes, "each Get was the one consumer: freed");
    }

    [TestMethod]
    public async Task Concurrent_puts_share_the_window_and_every_slot_comes_back()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var producer = await h.ConnectAsync(inProcess: false);
        var consumer = await h.ConnectAsync(inProcess: false);
        var inputs = Enumerable.Range(0, 12).Select(i => (Kind: i % 3, Data: random.Bytes(random.Next(1, i % 3 == 1 ? Window + 1 : 3 * Window)))).ToArray();

        var ids = await Task.WhenAll(inputs.Select(input => Task.Run(async () =>
        {
            switch (input.Kind)
            {
                case 0:
                    return await producer.PutAsync(input.Data);
                case 1:
                    var buffer = await producer.RentWindowAsync(input.Data.Length);
                    input.Data.CopyTo(buffer.Memory.Span);
                    return await producer.PutAsync(buffer);
                default:
                    await using (var writer = await producer.CreatePutWriterAsync(input.Data.Length))
                    {
                        while (writer.Written < writer.Length)
                        {
                            await writer.FlushAsync();
                            var span = writer.GetSpan();
                            int n = Math.Min(span.Length, 100_000);
                            input.Data.AsSpan((int)writer.Written, n).CopyTo(span);
                            writer.Advance(n);
                        }

                        return await writer.CompleteAsync();
                    }
            }
        })));

        Assert.AreEqual(0, producer.WindowSlotsInUse, "every rental went back");
        Assert.AreEqual(inputs.Where(i => i.Kind == 0).Sum(i => (long)i.Data.Length), producer.HostBytesCopied, "only the Puts from ordinary memory copied");
        for (int i = 0; i < inputs.Length; i++)
        {
            var back = new byte[inputs[i].Data.Length];
            await consumer.GetAsync(ids[i], back.AsMemory());
            Assert.AreEqual(DataChecksum.Compute(inputs[i].Data), DataChecksum.Compute(back), $"put {i} (kind {inputs[i].Kind}) holds its own bytes");
        }

        await consumer.FlushAsync();
        Assert.AreEqual(0L, h.Node.PoolOf(0).GetStatistics().InUseBytes);
    }

    [TestMethod]
    public async Task Cancelling_a_put_midway_or_dropping_a_writer_leaves_nothing_allocated()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var client = await h.ConnectAsync(inProcess: false);
        var data = random.Bytes(4 * Window); // 16 parts; at most 4 in flight

        using var cancel = new CancellationTokenSource();
        int started = 0;
        h.Node.RequestStarted += _ =>
        {
            if (Interlocked.Increment(ref started) == 3) // PutBegin and the first two parts
            {
                cancel.Cancel();
            }
        };
        await Assert.ThrowsAsync<OperationCanceledException>(async () => await client.PutAsync(data, cancellationToken: cancel.Token));
        Assert.IsLessThan(16, Volatile.Read(ref started) - 2, "the Put stopped before its last part (started counts its PutBegin and Release too)");

        await client.FlushAsync(); // the drop went one way
        Assert.AreEqual(0L, h.Node.PoolOf(0).GetStatistics().InUseBytes, "the unfinished data was dropped");
        Assert.AreEqual(0, client.WindowSlotsInUse, "the slots came back after the parts in flight were answered");

        var writer = await client.CreatePutWriterAsync(3L * Window);
        await writer.FlushAsync();
        writer.Advance(writer.GetMemory().Length);
        await writer.FlushAsync();
        writer.Advance(writer.GetMemory().Length / 2);
        await writer.DisposeAsync();
        await writer.DisposeAsync();
        await client.FlushAsync();
        Assert.AreEqual(0L, h.Node.PoolOf(0).GetStatistics().InUseBytes, "a writer disposed before completing drops its data");
        Assert.AreEqual(0, client.WindowSlotsInUse);

        var id = await client.PutAsync(data.AsMemory(0, Window));
        Assert.AreEqual(0, await client.WhereAsync(id), "the client still puts");
    }

    [TestMethod]
    public async Task Renting_waits_while_the_window_is_lent_and_the_wait_is_cancellable()
    {
        await using var h = await NodeHarness.StartAsync();
        var client = await h.ConnectAsync(inProcess: true);
        var all = await client.RentWindowAsync(client.MaxWindowBufferLength);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await client.RentWindowAsync(client.MaxWindowBufferLength + 1));

        using var cancel = new CancellationTokenSource();
        var cancelled = client.RentWindowAsync(1, cancel.Token).AsTask();
        var waiting = client.RentWindowAsync(1).AsTask();
        await using var writer = await client.CreatePutWriterAsync(10);
        Assert.IsFalse(cancelled.IsCompleted || waiting.IsCompleted, "nothing is free");
        Assert.ThrowsExactly<InvalidOperationException>(() => writer.GetMemory(), "the writer has no slot yet and GetMemory does not block");

        await cancel.CancelAsync();
        await Assert.ThrowsAsync<OperationCanceledException>(async () => await cancelled);
        Assert.IsFalse(waiting.IsCompleted);

        all.Dispose();
        using var one = await waiting;
        await writer.FlushAsync();
        Assert.AreEqual(10, writer.GetMemory().Length, "the writer's slot, cut to what is left to write");
        "0123456789"u8.CopyTo(writer.GetSpan());
        writer.Advance(10);
        var id = await writer.CompleteAsync();
        var back = new byte[10];
        await client.GetAsync(id, back.AsMemory());
        CollectionAssert.AreEqual("0123456789"u8.ToArray(), back);
    }

    [TestMethod]
    public async Task Disposing_twice_is_harmless_and_a_buffer_put_or_disposed_cannot_be_used()
    {
        await using var h = await NodeHarness.StartAsync();
        var client = await h.ConnectAsync(inProcess: false);
        var other = await h.ConnectAsync(inProcess: false);

        var disposed = await client.RentWindowAsync(5000);
        var memory = disposed.Memory;
        disposed.Dispose();
        disposed.Dispose();
        Assert.AreEqual(0, client.WindowSlotsInUse, "returned once");
        Assert.ThrowsExactly<ObjectDisposedException>(() => disposed.Memory);
        Assert.ThrowsExactly<ObjectDisposedException>(() => memory.Span[0] = 1, "memory taken before the dispose");
        Assert.ThrowsExactly<ObjectDisposedException>(() => memory.Pin());
        await Assert.ThrowsExactlyAsync<ObjectDisposedException>(async () => await client.PutAsync(disposed));

        var put = await client.RentWindowAsync(5000);
        put.Memory.Span.Fill(7);
        memory = put.Memory;
        var id = await client.PutAsync(put);
        Assert.ThrowsExactly<ObjectDisposedException>(() => put.Memory, "the Put took it over");
        Assert.ThrowsExactly<ObjectDisposedException>(() => memory.Span[0] = 1);
        put.Dispose();
        put.Dispose();
        Assert.AreEqual(0, client.WindowSlotsInUse, "the Put returned the range; the disposes did not return it again");
        await Assert.ThrowsExactlyAsync<ObjectDisposedException>(async () => await client.PutAsync(put), "put twice");

        var foreign = await other.RentWindowAsync(100);
        await Assert.ThrowsExactlyAsync<ArgumentException>(async () => await client.PutAsync(foreign));
        Assert.AreEqual(100, foreign.Memory.Length, "a refused Put leaves the buffer to its owner");
        foreign.Dispose();
        Assert.AreEqual(0, other.WindowSlotsInUse);

        var back = new byte[5000];
        await client.GetAsync(id, back.AsMemory());
        Assert.IsFalse(back.AsSpan().ContainsAnyExcept((byte)7), "the data put is what was written before the Put");
    }
}
