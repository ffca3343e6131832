using FaaSTube.Channels;
using FaaSTube.Kernels;
using FaaSTube.Tests.Support;
using FaaSTube.Topology;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// Put/Get/Allocate/Publish/Release through a node, over the socket with the control ring
/// (<see cref="RingChannelTests"/>) and without it (<see cref="SocketChannelTests"/>), and in process
/// by direct calls (<see cref="InProcessChannelTests"/>): the same results.
/// </summary>
public abstract class ChannelContractTests : PerTransportTests
{
    [TestMethod]
    public async Task Put_then_get_on_the_same_gpu_is_zero_copy_and_byte_exact()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var producer = await Connect(h);
        var consumer = await Connect(h);
        var data = random.Bytes((3 << 20) + 13); // several window halves

        var id = await producer.PutAsync(data);
        await using var buffer = await consumer.GetAsync(id);

        using var stream = buffer.Device.CreateStream();
        Assert.AreEqual(DataChecksum.Compute(data), await stream.ChecksumAsync(buffer.Memory));
        Assert.AreEqual((long)data.Length, buffer.Memory.Length);
        Assert.AreEqual(0, await consumer.WhereAsync(id));
    }

    [TestMethod]
    public async Task Get_to_host_memory_returns_the_same_bytes()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var client = await Connect(h);
        var data = random.Bytes((5 << 20) + 7);
        var id = await client.PutAsync(data, new PutOptions { Consumers = 1 });

        var back = new byte[data.Length + 10];
        long length = await client.GetAsync(id, back.AsMemory());

        Assert.AreEqual((long)data.Length, length);
        CollectionAssert.AreEqual(data, back[..data.Length]);
        await Assert.ThrowsAsync<TubeException>(async () => await client.GetAsync(id, back.AsMemory()), "its one consumer is done: freed");
    }

    [TestMethod]
    public async Task A_producer_writes_in_place_publishes_and_consumers_read_without_a_copy()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var producer = await Connect(h);
        var consumer = await Connect(h);
        ulong seed = (ulong)random.NextInt64();
        const int Length = (1 << 20) + 3;

        var buffer = await producer.AllocateAsync(Length);
        Assert.IsTrue(buffer.IsWritable);
        using (var stream = buffer.Device.CreateStream())
        {
            await stream.FillPatternAsync(buffer.Memory, seed);
            await producer.PublishAsync(buffer, stream);
        }

        await using var got = await consumer.GetAsync(buffer.Id);
        using var check = got.Device.CreateStream();
        Assert.AreEqual(PoolHarness.Expected(Length, seed), await check.ChecksumAsync(got.Memory));
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await producer.PublishAsync(buffer, check), "published twice");
    }

    [TestMethod]
    public async Task Fan_out_frees_the_data_when_the_last_consumer_is_done()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var producer = await Connect(h);
        var data = random.Bytes(1 << 20);
        var id = await producer.PutAsync(data, new PutOptions { Consumers = 3 });
        var consumers = new[] { await Connect(h), await Connect(h), await Connect(h) };

        var buffers = await Task.WhenAll(consumers.Select(c => c.GetAsync(id)));
        foreach (var b in buffers.Take(2))
        {
            await b.DisposeAsync();
        }

        await Task.WhenAll(consumers.Take(2).Select(c => c.FlushAsync()));
        Assert.IsGreaterThan(0L, h.Node.PoolOf(0).GetStatistics().InUseBytes, "one consumer still reads");
        await buffers[2].DisposeAsync();
        await consumers[2].FlushAsync(); // the release went one way: applied once the node answers a later call

        Assert.AreEqual(0L, h.Node.PoolOf(0).GetStatistics().InUseBytes, "freed at once");
        var error = await Assert.ThrowsAsync<TubeException>(async () => await consumers[0].GetAsync(id));
        Assert.AreEqual(TubeError.NotFound, error.Error);
    }

    [TestMethod]
    public async Task Data_outlives_the_producer_that_put_it()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var data = random.Bytes(100_000);
        var producer = await Connect(h);
        var id = await producer.PutAsync(data);
        var ended = h.SessionEnded(producer.SessionId);
        await producer.DisposeAsync();
        await ended;

        var consumer = await Connect(h);
        var back = new byte[data.Length];
        await consumer.GetAsync(id, back.AsMemory());
        CollectionAssert.AreEqual(data, back);
    }

    [TestMethod]
    public async Task Ids_are_scoped_to_their_workflow_and_leases_to_their_holder()
    {
        await using var h = await NodeHarness.StartAsync();
        var mine = await Connect(h, "traffic");
        var theirs = await Connect(h, "other");
        var id = await mine.PutAsync(new byte[4096]);

        Assert.AreEqual(TubeError.NotFound, (await Assert.ThrowsAsync<TubeException>(async () => await theirs.GetAsync(id))).Error, "no existence oracle");
        Assert.AreEqual(TubeError.NotFound, (await Assert.ThrowsAsync<TubeException>(async () => await theirs.WhereAsync(id))).Error);
        Assert.AreEqual(TubeError.NotFound, (await Assert.ThrowsAsync<TubeException>(async () => await mine.GetAsync(TubeId.NewId()))).Error);
        // Release goes one way: its refusal comes back through FlushAsync (and the next call, and OneWayFailed).
        var reported = new TaskCompletionSource<TubeErrorEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        mine.OneWayFailed += (_, e) => reported.TrySetResult(e);
        await mine.ReleaseAsync(id);
        Assert.AreEqual(TubeError.NotLeased, (await Assert.ThrowsAsync<TubeException>(async () => await mine.FlushAsync())).Error, "a lease not held");
        var args = await reported.Task.WaitAsync(ChildProcess.Timeout);
        Assert.AreEqual(TubeError.NotLeased, args.Error.Error, "reported by the event too");
        Assert.AreEqual("Release", args.Operation, "naming the refused request");
        Assert.AreEqual(id, args.Id);
        var failed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        theirs.OneWayFailed += (_, _) => failed.TrySetResult();
        await theirs.ReleaseAsync(id);
        await failed.Task.WaitAsync(TimeSpan.FromSeconds(30)); // the refusal arrived
        Assert.AreEqual(TubeError.NotLeased, (await Assert.ThrowsAsync<TubeException>(async () => await theirs.WhereAsync(id))).Error, "the next call throws it");
        await theirs.FlushAsync(); // reported once, not again
        await using var ok = await mine.GetAsync(id);
    }

    [TestMethod]
    public async Task A_consumer_on_another_gpu_gets_one_peer_copy_reused_by_later_consumers()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(GpuTopology.Dgx1V100);
        var producer = await Connect(h);
        var data = random.Bytes((2 << 20) + 1);
        var id = await producer.PutAsync(data, new PutOptions { Device = 0, Consumers = 2 });
        var consumer = await Connect(h);

        await using (var first = await consumer.GetAsync(id, device: 5))
        {
            Assert.AreEqual(5, first.Device.Ordinal);
            Assert.AreEqual(TubePath.PeerCopy, first.Path);
            using var stream = first.Device.CreateStream();
            Assert.AreEqual(DataChecksum.Compute(data), await stream.ChecksumAsync(first.Memory));
        }

        await using (var second = await consumer.GetAsync(id, device: 5))
        {
            using var stream = second.Device.CreateStream();
            Assert.AreEqual(DataChecksum.Compute(data), await stream.ChecksumAsync(second.Memory));
        }

        await consumer.FlushAsync();
        Assert.AreEqual(1L, h.Node.PoolOf(5).GetStatistics().Allocations, "copied once");
        Assert.AreEqual(0L, h.Node.PoolOf(5).GetStatistics().InUseBytes, "the copy went with the last consumer");
        Assert.AreEqual(TubeError.NotFound, (await Assert.ThrowsAsync<TubeException>(async () => await producer.WhereAsync(id))).Error);
    }

    [TestMethod]
    public async Task Shared_data_kept_until_deleted_serves_any_number_of_consumers_until_deleted()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var owner = await Connect(h);
        var weights = random.Bytes(1 << 20);
        var id = await owner.PutAsync(weights, new PutOptions { KeepUntilDeleted = true });
        h.Clock.Advance(TimeSpan.FromDays(1));
        Assert.AreEqual(0, h.Node.SweepExpired(), "data kept until deleted does not expire");

        for (int i = 0; i < 5; i++)
        {
            var reader = await Connect(h);
            await using (var buffer = await reader.GetAsync(id))
            {
                using var stream = buffer.Device.CreateStream();
                Assert.AreEqual(DataChecksum.Compute(weights), await stream.ChecksumAsync(buffer.Memory));
            }

            await reader.FlushAsync(); // its release (one way) is applied
        }

        await owner.DeleteAsync(id);
        Assert.AreEqual(TubeError.NotFound, (await Assert.ThrowsAsync<TubeException>(async () => await owner.GetAsync(id))).Error);
        Assert.AreEqual(0L, h.Node.PoolOf(0).GetStatistics().InUseBytes);
    }

    [TestMethod]
    public async Task Unconsumed_data_expires_after_its_ttl()
    {
        await using var h = await NodeHarness.StartAsync();
        var client = await Connect(h);
        var id = await client.PutAsync(new byte[4096], new PutOptions { Ttl = TimeSpan.FromSeconds(5) });

        h.Clock.Advance(TimeSpan.FromSeconds(4));
        Assert.AreEqual(0, h.Node.SweepExpired());
        h.Clock.Advance(TimeSpan.FromSeconds(2));
        Assert.AreEqual(1, h.Node.SweepExpired());

        Assert.AreEqual(TubeError.NotFound, (await Assert.ThrowsAsync<TubeException>(async () => await client.GetAsync(id))).Error);
        Assert.AreEqual(0L, h.Node.PoolOf(0).GetStatistics().InUseBytes);
    }

    [TestMethod]
    public async Task A_OneWayFailed_handler_that_throws_or_blocks_does_not_stop_the_connection()
    {
        await using var h = await NodeHarness.StartAsync();
        var client = await Connect(h);
        var id = await client.PutAsync(new byte[100]);
        using var release = new ManualResetEventSlim();
        var raised = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        client.OneWayFailed += (_, _) =>
        {
            raised.TrySetResult();
            release.Wait(ChildProcess.Timeout); // a handler that blocks...
            throw new ArgumentException("a bug in the handler"); // ...then throws
        };
        await client.ReleaseAsync(TubeId.NewId()); // NotLeased, one way
        await raised.Task.WaitAsync(ChildProcess.Timeout);
        Assert.AreEqual(TubeError.NotLeased, (await Assert.ThrowsAsync<TubeException>(async () => await client.WhereAsync(id))).Error, "the refusal, once, from the next call");
        Assert.AreEqual(0, await client.WhereAsync(id).WaitAsync(ChildProcess.Timeout), "answers still arrive while the handler blocks");
        release.Set();
        Assert.AreEqual(0, await client.WhereAsync(id).WaitAsync(ChildProcess.Timeout), "and after it threw");
    }

    [TestMethod]
    public async Task A_get_waiting_for_a_publish_holds_no_request_slot()
    {
        await using var h = await NodeHarness.StartAsync(configure: o => o.MaxRequestsInFlight = 1);
        var producer = await Connect(h);
        var consumer = await Connect(h);
        var published = await consumer.PutAsync(new byte[100]);
        await using var output = await producer.AllocateAsync(4096);
        var waiting = consumer.GetAsync(output.Id);
        await consumer.FlushAsync();
        Assert.AreEqual(0, await consumer.WhereAsync(published).WaitAsync(ChildProcess.Timeout), "the connection's one slot is free while its Get waits");
        Assert.IsFalse(waiting.IsCompleted);
        using var stream = output.Device.CreateStream();
        await producer.PublishAsync(output, stream);
        await using var got = await waiting.WaitAsync(ChildProcess.Timeout);
        Assert.AreEqual(output.Id, got.Id);
    }

    [TestMethod]
    public async Task More_gets_waiting_for_publishes_than_request_slots_all_get_their_data()
    {
        const int Slots = 2, Consumers = 5;
        await using var h = await NodeHarness.StartAsync(configure: o => o.MaxRequestsInFlight = Slots);
        var producer = await Connect(h);
        var consumer = await Connect(h);
        var outputs = new List<TubeBuffer>();
        for (int i = 0; i < Consumers; i++)
        {
            outputs.Add(await producer.AllocateAsync(4096));
        }

        var parked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Node.RequestStarted += running =>
        {
            if (running >= 2 * Slots)
            {
                parked.TrySetResult(); // two in wait slots, two waiting in request slots: the fifth waits unread
            }
        };
        var gets = outputs.Select(o => consumer.GetAsync(o.Id)).ToList();
        await parked.Task.WaitAsync(ChildProcess.Timeout);
        foreach (var output in outputs)
        {
            using var stream = output.Device.CreateStream();
            await producer.PublishAsync(output, stream);
        }

        foreach (var (get, output) in gets.Zip(outputs))
        {
            await using var got = await get.WaitAsync(ChildProcess.Timeout); // told to wait, never refused
            Assert.AreEqual(output.Id, got.Id);
        }
    }

    [TestMethod]
    public async Task A_get_of_data_not_yet_published_waits_for_the_publish()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var producer = await Connect(h);
        var consumer = await Connect(h);
        var data = random.Bytes((1 << 20) + 3);
        await using var output = await producer.AllocateAsync(data.Length);

        var get = consumer.GetAsync(output.Id);
        await consumer.FlushAsync(); // the node has read the Get: it is waiting
        Assert.IsFalse(get.IsCompleted, "nothing to map before the publish");

        using var stream = output.Device.CreateStream();
        await stream.CopyAsync(data, output.Memory);
        var id = await producer.PublishAsync(output, stream);
        await using var got = await get.WaitAsync(ChildProcess.Timeout);
        Assert.AreEqual(id, got.Id);
        Assert.AreEqual(TubePath.ZeroCopy, got.Path);
        using var reader = got.Device.CreateStream();
        Assert.AreEqual(DataChecksum.Compute(data), await reader.ChecksumAsync(got.Memory), "the producer's bytes, complete");
    }

    [TestMethod]
    public async Task A_get_that_waits_for_a_publish_ends_with_NotFound_when_its_wait_runs_out_or_the_allocation_is_dropped()
    {
        await using var h = await NodeHarness.StartAsync(configure: o => o.MaxPublishWait = TimeSpan.FromSeconds(10));
        var producer = await Connect(h);
        var consumer = await Connect(h);
        var never = await producer.AllocateAsync(4096);
        var get = consumer.GetAsync(never.Id);
        await consumer.FlushAsync();
        h.Clock.Advance(TimeSpan.FromSeconds(9));
        await consumer.FlushAsync();
        Assert.IsFalse(get.IsCompleted, "still within the node's limit");
        h.Clock.Advance(TimeSpan.FromSeconds(2));
        var timedOut = await Assert.ThrowsAsync<TubeException>(async () => await get.WaitAsync(ChildProcess.Timeout));
        Assert.AreEqual(TubeError.NotFound, timedOut.Error);
        StringAssert.Contains(timedOut.Message, "not published within 10 s");

        var dropped = consumer.GetAsync(never.Id);
        await consumer.FlushAsync();
        await never.DisposeAsync(); // the producer gives up: its allocation goes
        Assert.AreEqual(TubeError.NotFound, (await Assert.ThrowsAsync<TubeException>(async () => await dropped.WaitAsync(ChildProcess.Timeout))).Error);
        await producer.FlushAsync();
        Assert.AreEqual(0L, h.Node.PoolOf(0).GetStatistics().InUseBytes);
    }

    [TestMethod]
    public async Task Evicted_data_is_restored_on_get()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(configure: o => o.Pool.MaxBytes = 16 << 20);
        var client = await Connect(h);
        var first = random.Bytes(12 << 20);
        var second = random.Bytes(12 << 20);
        var a = await client.PutAsync(first, new PutOptions { Consumers = 2 });
        await client.PutAsync(second); // does not fit beside the first: it is evicted

        Assert.AreEqual(1L, h.Node.PoolOf(0).GetStatistics().Evictions);
        await using (var restored = await client.GetAsync(a))
        {
            Assert.AreEqual(TubePath.Restored, restored.Path, "brought back from host memory, then mapped");
            using var stream = restored.Device.CreateStream();
            Assert.AreEqual(DataChecksum.Compute(first), await stream.ChecksumAsync(restored.Memory));
        }

        var back = new byte[first.Length];
        await client.GetAsync(a, back.AsMemory());
        CollectionAssert.AreEqual(first, back);
    }
}

[TestClass]
public sealed class InProcessChannelTests : ChannelContractTests
{
    private protected override bool InProcess => true;
}

[TestClass]
public sealed class SocketChannelTests : ChannelContractTests
{
    private protected override bool InProcess => false;
}

[TestClass]
public sealed class RingChannelTests : ChannelContractTests
{
    private protected override bool InProcess => false;

    private protected override int ControlRingBytes => 64 << 10;
}
