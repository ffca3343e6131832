using FaaSTube.Channels;
using FaaSTube.Kernels;
using FaaSTube.Tests.Support;
using FaaSTube.Topology;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// Named objects through a node (docs/protocol.md, requests 14-19), over the socket with the control
/// ring (<see cref="RingNamedObjectTests"/>), without it (<see cref="SocketNamedObjectTests"/>) and in
/// process (<see cref="InProcessNamedObjectTests"/>): names by scope, namespaces granted by the node's
/// policy, get-or-load once, versions, replicas.
/// </summary>
public abstract class NamedObjectTests : PerTransportTests
{
    [TestMethod]
    public async Task A_named_put_is_found_by_name_from_another_client_with_its_bytes_and_its_gpu()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var producer = await Connect(h);
        var consumer = await Connect(h);
        var data = random.Bytes((3 << 20) + 17);

        long version = await producer.PutNamedAsync("models/resnet-50", data);
        await using var got = await consumer.GetNamedAsync("models/resnet-50");

        Assert.AreEqual(1L, version);
        Assert.AreEqual((long)data.Length, got.Memory.Length);
        Assert.AreEqual(DataChecksum.Compute(data), await ChecksumAsync(got));
        Assert.AreEqual(TubePath.ZeroCopy, got.Path);
        CollectionAssert.AreEqual(new[] { 0 }, (await consumer.WhereNamedAsync("models/resnet-50")).ToArray());
    }

    [TestMethod]
    public async Task Another_workflow_gets_NotFound_for_a_name_as_for_one_that_does_not_exist()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var owner = await Connect(h, "owner");
        var foreign = await Connect(h, "foreign");
        await owner.PutNamedAsync("bert", random.Bytes(10_000));

        var hidden = await Assert.ThrowsAsync<TubeException>(async () => await foreign.GetNamedAsync("bert"));
        var missing = await Assert.ThrowsAsync<TubeException>(async () => await foreign.GetNamedAsync("no-such-model"));
        var where = await Assert.ThrowsAsync<TubeException>(async () => await foreign.WhereNamedAsync("bert"));
        var delete = await Assert.ThrowsAsync<TubeException>(async () => await foreign.DeleteNamedAsync("bert"));

        Assert.AreEqual(TubeError.NotFound, hidden.Error);
        Assert.AreEqual(TubeError.NotFound, where.Error);
        Assert.AreEqual(TubeError.NotFound, delete.Error);
        Assert.AreEqual(missing.Message.Replace("no-such-model", "bert", StringComparison.Ordinal), hidden.Message, "the same answer as for a name that does not exist");
        await using var still = await owner.GetNamedAsync("bert");
        Assert.AreEqual(10_000L, still.Memory.Length, "the foreign Delete removed nothing");
    }

    [TestMethod]
    public async Task A_namespace_is_shared_by_the_workflows_the_node_grants_it_and_NotFound_for_the_others()
    {
        var random = Seeds.Create(TestContext);
        int asked = 0;
        await using var h = await NodeHarness.StartAsync(configure: o => o.AuthorizeNamespace = (workflow, ns) =>
        {
            Interlocked.Increment(ref asked);
            return ns == "shared" && workflow is "a" or "b";
        });
        var a = await Connect(h, "a");
        var b = await Connect(h, "b");
        var c = await Connect(h, "c");
        var shared = new NamedOptions { Namespace = "shared" };
        var data = random.Bytes((1 << 20) + 5);

        await a.PutNamedAsync("llama", data, shared);
        await using (var fromB = await b.GetNamedAsync("llama", shared))
        {
            Assert.AreEqual(DataChecksum.Compute(data), await ChecksumAsync(fromB), "b reads a's object in the namespace both are granted");
        }

        var denied = await Assert.ThrowsAsync<TubeException>(async () => await c.GetNamedAsync("llama", shared));
        var putDenied = await Assert.ThrowsAsync<TubeException>(async () => await c.PutNamedAsync("llama", data, shared));
        var otherNs = await Assert.ThrowsAsync<TubeException>(async () => await a.GetNamedAsync("llama", new NamedOptions { Namespace = "other" }));
        Assert.AreEqual(TubeError.NotFound, denied.Error, "not AccessDenied: a namespace's existence does not leak");
        Assert.AreEqual(TubeError.NotFound, putDenied.Error);
        Assert.AreEqual(TubeError.NotFound, otherNs.Error);
        var own = await Assert.ThrowsAsync<TubeException>(async () => await b.GetNamedAsync("llama"));
        Assert.AreEqual(TubeError.NotFound, own.Error, "the namespace's name is not in b's own scope");
        Assert.IsGreaterThanOrEqualTo(5, Volatile.Read(ref asked), "the policy is asked on every named call");
    }

    [TestMethod]
    public async Task Names_are_bounded_in_length_charset_and_count_per_scope()
    {
        await using var h = await NodeHarness.StartAsync(configure: o => o.MaxNamesPerScope = 3);
        var client = await Connect(h);
        byte[] one = [1];

        foreach (var bad in new[] { new string('n', 129), "white space", "ctl\u0001", "é" })
        {
            var refused = await Assert.ThrowsAsync<TubeException>(async () => await client.PutNamedAsync(bad, one), bad);
            Assert.AreEqual(TubeError.BadRequest, refused.Error, bad);
        }

        await client.PutNamedAsync(new string('n', 128), one);
        await client.PutNamedAsync("b", one);
        await client.PutNamedAsync("c", one);
        var full = await Assert.ThrowsAsync<TubeException>(async () => await client.PutNamedAsync("d", one));
        Assert.AreEqual(TubeError.BadRequest, full.Error);
        StringAssert.Contains(full.Message, "3 names");
        var fullLoad = await Assert.ThrowsAsync<TubeException>(async () => await client.GetOrLoadAsync("d", NamedLoader.FromBytes(_ => ValueTask.FromResult<ReadOnlyMemory<byte>>(one))));
        Assert.AreEqual(TubeError.BadRequest, fullLoad.Error, "a load in progress counts as a name");

        Assert.AreEqual(2L, await client.PutNamedAsync("b", one), "a new version of a name is no new name");
        var other = await Connect(h, "other");
        Assert.AreEqual(1L, await other.PutNamedAsync("d", one), "the bound is per scope");
        await client.DeleteNamedAsync("c");
        Assert.AreEqual(1L, await client.PutNamedAsync("d", one), "a deleted name frees its place");
        Assert.AreEqual(3, h.Node.Names.CountIn("wf"));
    }

    [TestMethod]
    public async Task Sixteen_concurrent_callers_load_once_and_all_read_the_same_bytes()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var clients = new List<TubeClient>();
        for (int i = 0; i < 16; i++)
        {
            clients.Add(await Connect(h));
        }

        var data = random.Bytes((2 << 20) + 99);
        int loads = 0;
        int waiting = 0;
        var othersWait = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Node.Names.WaiterArrived += _ =>
        {
            if (Interlocked.Increment(ref waiting) == 15)
            {
                othersWait.TrySetResult();
            }
        };
        var loader = NamedLoader.FromBytes(async ct =>
        {
            Interlocked.Increment(ref loads);
            await othersWait.Task.WaitAsync(TimeSpan.FromSeconds(60), ct); // the load finishes only once the 15 others wait for it
            return data;
        });

        var buffers = await Task.WhenAll(clients.Select(c => Task.Run(() => c.GetOrLoadAsync("gpt2", loader))));
        try
        {
            Assert.AreEqual(1, Volatile.Read(ref loads), "the loader ran once");
            Assert.IsGreaterThanOrEqualTo(15, Volatile.Read(ref waiting), "15 callers waited for the one load");
            foreach (var b in buffers)
            {
                Assert.AreEqual(DataChecksum.Compute(data), await ChecksumAsync(b));
            }
        }
        finally
        {
            foreach (var b in buffers)
            {
                await b.DisposeAsync();
            }
        }
    }

    [TestMethod]
    public async Task A_loader_that_throws_wakes_its_waiters_with_the_error_and_the_next_caller_loads()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var first = await Connect(h);
        var waiter = await Connect(h);
        var next = await Connect(h);
        var waiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Node.Names.WaiterArrived += _ => waiting.TrySetResult();
        var loaderRuns = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var failing = NamedLoader.FromBytes(async ct =>
        {
            loaderRuns.TrySetResult();
            await waiting.Task.WaitAsync(TimeSpan.FromSeconds(60), ct);
            throw new IOException("weights.bin: checksum mismatch");
        });
        int otherLoads = 0;
        var data = random.Bytes(300_000);
        var counting = NamedLoader.FromBytes(_ =>
        {
            Interlocked.Increment(ref otherLoads);
            return ValueTask.FromResult<ReadOnlyMemory<byte>>(data);
        });

        var loading = first.GetOrLoadAsync("vit", failing);
        await loaderRuns.Task.WaitAsync(TimeSpan.FromSeconds(60)); // first is the loader before the waiter asks
        var waited = Task.Run(() => waiter.GetOrLoadAsync("vit", counting));

        var thrown = await Assert.ThrowsAsync<IOException>(async () => await loading);
        Assert.AreEqual("weights.bin: checksum mismatch", thrown.Message, "the loader's own exception, to its caller");
        var woken = await Assert.ThrowsAsync<TubeException>(async () => await waited);
        Assert.AreEqual(TubeError.LoadFailed, woken.Error);
        StringAssert.Contains(woken.Message, "weights.bin: checksum mismatch");
        Assert.AreEqual(0, Volatile.Read(ref otherLoads), "the waiter did not load");

        await using var loaded = await next.GetOrLoadAsync("vit", counting);
        Assert.AreEqual(1, Volatile.Read(ref otherLoads), "the next caller loaded");
        Assert.AreEqual(DataChecksum.Compute(data), await ChecksumAsync(loaded));
    }

    [TestMethod]
    public async Task A_new_version_is_what_new_gets_see_while_an_old_reader_keeps_its_own()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var writer = await Connect(h);
        var reader = await Connect(h);
        var v1 = random.Bytes(1 << 20);
        var v2 = random.Bytes(1 << 20);
        var pool = h.Node.PoolOf(0);

        Assert.AreEqual(1L, await writer.PutNamedAsync("clip", v1));
        var old = await reader.GetNamedAsync("clip");
        Assert.AreEqual(2L, await writer.PutNamedAsync("clip", v2));
        long bothHeld = pool.GetStatistics().InUseBytes;

        await using (var fresh = await reader.GetNamedAsync("clip"))
        {
            Assert.AreEqual(DataChecksum.Compute(v2), await ChecksumAsync(fresh), "new Gets see version 2");
        }

        Assert.AreEqual(DataChecksum.Compute(v1), await ChecksumAsync(old), "the old reader still reads version 1");
        await old.DisposeAsync();
        await reader.FlushAsync();
        Assert.IsLessThan(bothHeld, pool.GetStatistics().InUseBytes, "version 1 is freed once its last reader let go");
        Assert.AreEqual(3L, await writer.PutNamedAsync("clip", v1), "versions count on");
    }

    [TestMethod]
    public async Task A_get_on_another_gpu_makes_one_replica_that_where_reports()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(GpuTopology.Dgx1V100);
        var client = await Connect(h);
        var data = random.Bytes((2 << 20) + 1);
        await client.PutNamedAsync("whisper", data, new NamedOptions { Device = 0 });

        await using (var remote = await client.GetNamedAsync("whisper", new NamedOptions { Device = 3 }))
        {
            Assert.AreEqual(TubePath.PeerCopy, remote.Path);
            Assert.AreEqual(DataChecksum.Compute(data), await ChecksumAsync(remote));
        }

        await using (var again = await client.GetNamedAsync("whisper", new NamedOptions { Device = 3 }))
        {
            Assert.AreEqual(TubePath.ZeroCopy, again.Path, "the replica is kept and reused");
        }

        CollectionAssert.AreEqual(new[] { 0, 3 }, (await client.WhereNamedAsync("whisper")).ToArray());
    }

    [TestMethod]
    public async Task A_load_from_a_stream_or_a_writer_puts_exactly_its_bytes()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var client = await Connect(h);
        var data = random.Bytes((5 << 20) + 3);

        await using (var fromStream = await client.GetOrLoadAsync("s", NamedLoader.FromStream(data.Length, _ => ValueTask.FromResult<Stream>(new MemoryStream(data)))))
        {
            Assert.AreEqual(DataChecksum.Compute(data), await ChecksumAsync(fromStream));
        }

        var loader = NamedLoader.FromWriter(data.Length, async (writer, ct) =>
        {
            for (int offset = 0; offset < data.Length;)
            {
                await writer.FlushAsync(ct);
                var slot = writer.GetMemory();
                data.AsMemory(offset, slot.Length).CopyTo(slot);
                writer.Advance(slot.Length);
                offset += slot.Length;
            }
        });
        await using (var fromWriter = await client.GetOrLoadAsync("w", loader))
        {
            Assert.AreEqual(DataChecksum.Compute(data), await ChecksumAsync(fromWriter));
        }

        var shortStream = NamedLoader.FromStream(data.Length, _ => ValueTask.FromResult<Stream>(new MemoryStream(data, 0, 1000)));
        await Assert.ThrowsAsync<EndOfStreamException>(async () => await client.GetOrLoadAsync("short", shortStream));
        var none = await Assert.ThrowsAsync<TubeException>(async () => await client.GetNamedAsync("short"));
        Assert.AreEqual(TubeError.NotFound, none.Error, "a failed load leaves no name behind");
    }
}

[TestClass]
public sealed class InProcessNamedObjectTests : NamedObjectTests
{
    private protected override bool InProcess => true;
}

[TestClass]
public sealed class SocketNamedObjectTests : NamedObjectTests
{
    private protected override bool InProcess => false;
}

[TestClass]
public sealed class RingNamedObjectTests : NamedObjectTests
{
    private protected override bool InProcess => false;

    private protected override int ControlRingBytes => 64 << 10;
}
