using System.Diagnostics;
using System.Text;
using FaaSTube.Channels;
using FaaSTube.Kernels;
using FaaSTube.Native;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// Node to node (src/FaaSTube/Channels/Peers): a consumer on node 2 reads what a producer put on node 1,
/// by id (its home node asked) or by name (each peer asked), with one network transfer and then local
/// Gets. Both nodes run their network side in their gateways (child processes), so no UCX runs in
/// this test process, except in the one test that checks the in-process transport.
/// </summary>
[TestClass]
public sealed class PeerFetchTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);
    private static readonly byte[] Secret = TestSecrets.Workflow;
    private static readonly byte[] OtherSecret = Encoding.UTF8.GetBytes("the secret of workflow other, 32");

    public TestContext TestContext { get; set; } = null!;

    private readonly CollectingLoggerFactory _log = new(Microsoft.Extensions.Logging.LogLevel.Information);

    [TestCleanup]
    public void ShowLog() => _log.ShowIfFailed(TestContext);

    private Task<NodeHarness> StartAsync(int number, IReadOnlyDictionary<int, string>? peers = null, Action<TubeNodeOptions>? more = null)
    {
        if (!UcxLibrary.TryLoad(out string? reason))
        {
            Assert.Inconclusive(reason);
        }

        return NodeHarness.StartAsync(loggerFactory: _log, configure: o =>
        {
            o.NodeNumber = number;
            o.PeerNodes = peers;
            o.NetworkListen = "127.0.0.1:0";
            o.RemoteSecrets = new Dictionary<string, byte[]> { ["wf"] = Secret, ["other"] = OtherSecret };
            o.UcxSettings = new Dictionary<string, string> { ["TLS"] = "tcp", ["NET_DEVICES"] = "lo" };
            o.Pool.SlabBytes = 64 << 20;
            o.PeerFetchTimeout = TimeSpan.FromSeconds(30);
            more?.Invoke(o);
        });
    }

    private static Dictionary<int, string> PeerAt(int number, NodeHarness node) => new() { [number] = $"ucx://{node.Node.NetworkEndPoint}" };

    private static async Task<ulong> ChecksumAsync(TubeBuffer buffer)
    {
        using var stream = buffer.Device.CreateStream();
        return await stream.ChecksumAsync(buffer.Memory);
    }

    /// <summary>
    /// An id put on node 1 (its home) is read on node 2's GPU: fetched once (path NodeFetch), the same
    /// checksum; the next Gets are local (zero copy, or a host read) with no second fetch.
    /// </summary>
    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public async Task An_id_put_on_one_node_is_read_on_another_after_one_fetch(bool inProcessNetwork)
    {
        var random = Seeds.Create(TestContext);
        await using var one = await StartAsync(1, more: o => o.NetworkIsolation = inProcessNetwork ? NetworkIsolation.InProcess : NetworkIsolation.Process);
        await using var two = await StartAsync(2, PeerAt(1, one), o => o.NetworkIsolation = inProcessNetwork ? NetworkIsolation.InProcess : NetworkIsolation.Process);
        var producer = await one.ConnectAsync(inProcess: false);
        var consumer = await two.ConnectAsync(inProcess: false);

        int size = random.Next(5 << 20, 9 << 20) | 1; // several window slots, and an odd tail
        byte[] data = random.Bytes(size);
        var id = await producer.PutAsync(data, new PutOptions { Consumers = 2 }); // node 2's fetch is one consumer on node 1
        Assert.AreEqual(1, id.Home, "an id carries the number of the node that made it");

        var watch = Stopwatch.StartNew();
        await using (var first = await consumer.GetAsync(id).WaitAsync(Bound))
        {
            TestContext.WriteLine($"{size} bytes fetched and mapped in {watch.ElapsedMilliseconds} ms");
            Assert.AreEqual(TubePath.NodeFetch, first.Path, "the first Get says the data came from a peer node");
            Assert.AreEqual(DataChecksum.Compute(data), await ChecksumAsync(first), "node 2's copy is node 1's bytes");
        }

        await using (var again = await consumer.GetAsync(id).WaitAsync(Bound))
        {
            Assert.AreEqual(TubePath.ZeroCopy, again.Path, "the copy stays on node 2 after its first Get let go: read in place");
        }

        var back = new byte[size];
        await consumer.GetAsync(id, back).WaitAsync(Bound);
        CollectionAssert.AreEqual(data, back, "a host read of the copy");
        Assert.AreEqual(1, two.Node.PeerFetches!.Fetched, "one fetch, however many Gets");
        Assert.AreEqual(0, two.Node.PeerFetches.Failed);
        Assert.AreEqual(size, two.Node.PathBytes(TubePath.NodeFetch, transmit: false), "the admin status's node_fetch path counts the fetched bytes once");

        var still = new byte[size];
        await producer.GetAsync(id, still).WaitAsync(Bound);
        CollectionAssert.AreEqual(data, still, "the producer's node still has its data for its own consumer");
    }

    /// <summary>
    /// A host read of another node's small datum: the client's one-request GetWhole never fetches
    /// (a slow peer would hold its window slot), so it is NotFound on node 2 and the client's Get
    /// then fetches it: one fetch, the bytes whole, and the GetWhole alone started none.
    /// </summary>
    [TestMethod]
    public async Task A_one_request_get_never_fetches_and_the_get_after_it_does()
    {
        var random = Seeds.Create(TestContext);
        await using var one = await StartAsync(1);
        await using var two = await StartAsync(2, PeerAt(1, one));
        var producer = await one.ConnectAsync(inProcess: false);
        var consumer = await two.ConnectAsync(inProcess: false);
        byte[] data = random.Bytes(random.Next(1, consumer.WindowSlotLength + 1));
        var id = await producer.PutAsync(data, new PutOptions { Consumers = 1 });

        var raw = await Assert.ThrowsExactlyAsync<TubeException>(() => consumer.CallRawAsync(FaaSTube.Channels.Protocol.FrameType.GetWhole, new FaaSTube.Channels.Protocol.PayloadWriter().Id(id).I32(0).I32(data.Length).I32(0)));
        Assert.AreEqual(TubeError.NotFound, raw.Error, "a GetWhole reads this node's data only");
        Assert.AreEqual(0, two.Node.PeerFetches!.Fetched + two.Node.PeerFetches.Failed, "and started no fetch");

        var back = new byte[data.Length];
        Assert.AreEqual(data.Length, await consumer.GetAsync(id, back).WaitAsync(Bound));
        CollectionAssert.AreEqual(data, back, "the client's Get after its GetWhole fetched it");
        Assert.AreEqual(1, two.Node.PeerFetches.Fetched, "one fetch");
    }

    /// <summary>A name put on node 1 is read on node 2 (each peer asked): fetched once as a version of the same name there.</summary>
    [TestMethod]
    public async Task A_name_put_on_one_node_is_read_on_another()
    {
        var random = Seeds.Create(TestContext);
        await using var one = await StartAsync(1);
        await using var two = await StartAsync(2, PeerAt(1, one));
        var producer = await one.ConnectAsync(inProcess: false);
        var consumer = await two.ConnectAsync(inProcess: false);

        byte[] model = random.Bytes(random.Next(1, 6 << 20));
        await producer.PutNamedAsync("models/resnet", model);
        var back = new byte[model.Length];
        long length = await consumer.GetNamedAsync("models/resnet", back).WaitAsync(Bound);
        Assert.AreEqual(model.Length, length);
        CollectionAssert.AreEqual(model, back, "node 2's copy of the name is node 1's bytes");

        await using var mapped = await consumer.GetNamedAsync("models/resnet").WaitAsync(Bound);
        Assert.AreEqual(TubePath.ZeroCopy, mapped.Path, "a later Get finds the name here");
        Assert.AreEqual(DataChecksum.Compute(model), await ChecksumAsync(mapped));
        Assert.AreEqual(1, two.Node.PeerFetches!.Fetched);

        var missing = await Assert.ThrowsExactlyAsync<TubeException>(() => consumer.GetNamedAsync("models/none").WaitAsync(Bound));
        Assert.AreEqual(TubeError.NotFound, missing.Error, missing.Message);
    }

    /// <summary>
    /// What a fetch never does: serve another workflow's data (the peer scopes it to the asking
    /// workflow), ask a node that is not a peer, fetch for a workflow without a remote secret here, or
    /// ask the id's home back when the id is this node's own. Each is NotFound, and the node serves on.
    /// </summary>
    [TestMethod]
    public async Task A_fetch_reaches_only_the_asking_workflows_data_at_its_home()
    {
        var random = Seeds.Create(TestContext);
        await using var one = await StartAsync(1);
        await using var two = await StartAsync(2, PeerAt(1, one));
        var producer = await one.ConnectAsync(inProcess: false);
        var id = await producer.PutAsync(random.Bytes(4096), new PutOptions { Consumers = 5 });

        var otherWorkflow = await two.ConnectAsync(inProcess: false, workflow: "other");
        var refused = await Assert.ThrowsExactlyAsync<TubeException>(() => otherWorkflow.GetAsync(id).WaitAsync(Bound));
        Assert.AreEqual(TubeError.NotFound, refused.Error, "another workflow's id is not found on the peer either");
        TestContext.WriteLine(refused.Message);

        var noSecret = await two.ConnectAsync(inProcess: false, workflow: "nosecret");
        var local = await Assert.ThrowsExactlyAsync<TubeException>(() => noSecret.GetAsync(id).WaitAsync(Bound));
        Assert.AreEqual(TubeError.NotFound, local.Error);

        var consumer = await two.ConnectAsync(inProcess: false);
        var elsewhere = new TubeId(id.High, (id.Low & 0x0000FFFFFFFFFFFF) | (7UL << 48)); // home 7: not a peer of node 2
        var notPeer = await Assert.ThrowsExactlyAsync<TubeException>(() => consumer.GetAsync(elsewhere).WaitAsync(Bound));
        Assert.AreEqual(TubeError.NotFound, notPeer.Error);
        var own = new TubeId(id.High, (id.Low & 0x0000FFFFFFFFFFFF) | (2UL << 48)); // node 2's own: not asked of anyone
        Assert.AreEqual(TubeError.NotFound, (await Assert.ThrowsExactlyAsync<TubeException>(() => consumer.GetAsync(own).WaitAsync(Bound))).Error);
        Assert.AreEqual(1, two.Node.PeerFetches!.Failed, "only the other workflow's Get was asked of the peer (and refused)");
        Assert.AreEqual(0, two.Node.PeerFetches.Fetched);

        var unknown = TubeId.NewId(); // home 1-bits cleared: a random id of home 0 is asked of every peer, and not there
        Assert.AreEqual(0, unknown.Home);
        Assert.AreEqual(TubeError.NotFound, (await Assert.ThrowsExactlyAsync<TubeException>(() => consumer.GetAsync(unknown).WaitAsync(Bound))).Error);

        await using var got = await consumer.GetAsync(id).WaitAsync(Bound);
        Assert.AreEqual(TubePath.NodeFetch, got.Path, "the right workflow still gets it");
    }

    /// <summary>Many consumers ask for the same id at once: one fetch, and every one gets the same bytes.</summary>
    [TestMethod]
    public async Task Gets_of_the_same_id_at_once_share_one_fetch()
    {
        var random = Seeds.Create(TestContext);
        await using var one = await StartAsync(1);
        await using var two = await StartAsync(2, PeerAt(1, one));
        var producer = await one.ConnectAsync(inProcess: false);
        byte[] data = random.Bytes(random.Next(1 << 20, 3 << 20));
        var id = await producer.PutAsync(data);
        var consumers = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => two.ConnectAsync(inProcess: false)));
        var copies = await Task.WhenAll(consumers.Select(async c =>
        {
            var back = new byte[data.Length];
            await c.GetAsync(id, back).WaitAsync(Bound);
            return back;
        }));
        foreach (var copy in copies)
        {
            CollectionAssert.AreEqual(data, copy);
        }

        Assert.AreEqual(1, two.Node.PeerFetches!.Fetched, "one fetch served every consumer");
    }

    /// <summary>
    /// A peer that is gone, or that does not know the workflow's secret: the Get fails as NotFound
    /// within the fetch's bound with the reason, nothing of the failed fetch stays, and the node
    /// serves its own data on.
    /// </summary>
    [TestMethod]
    public async Task A_peer_gone_or_refusing_fails_the_get_in_bounded_time_and_nothing_else()
    {
        var random = Seeds.Create(TestContext);
        var one = await StartAsync(1);
        await using var wrong = await StartAsync(3, more: o => o.RemoteSecrets = new Dictionary<string, byte[]> { ["wf"] = OtherSecret });
        var peers = new Dictionary<int, string>(PeerAt(1, one)) { [3] = $"ucx://{wrong.Node.NetworkEndPoint}" };
        await using var two = await StartAsync(2, peers);
        var consumer = await two.ConnectAsync(inProcess: false);
        byte[] mine = random.Bytes(1 << 20);
        var kept = await consumer.PutAsync(mine);
        long before = two.Node.PoolOf(0).GetStatistics().InUseBytes;

        var onWrong = await (await wrong.ConnectAsync(inProcess: false)).PutAsync(random.Bytes(4096));
        var refused = await Assert.ThrowsExactlyAsync<TubeException>(() => consumer.GetAsync(onWrong).WaitAsync(Bound));
        Assert.AreEqual(TubeError.NotFound, refused.Error);
        TestContext.WriteLine($"wrong secret: {refused.Message}");

        var id = await (await one.ConnectAsync(inProcess: false)).PutAsync(random.Bytes(4096));
        await one.DisposeAsync();
        var watch = Stopwatch.StartNew();
        var gone = await Assert.ThrowsExactlyAsync<TubeException>(() => consumer.GetAsync(id).WaitAsync(Bound));
        Assert.AreEqual(TubeError.NotFound, gone.Error);
        StringAssert.Contains(gone.Message, "answers", "the reason says the peer was not reached: " + gone.Message);
        TestContext.WriteLine($"peer gone: failed after {watch.ElapsedMilliseconds} ms: {gone.Message}");
        Assert.AreEqual(2, two.Node.PeerFetches!.Failed);

        Assert.AreEqual(before, two.Node.PoolOf(0).GetStatistics().InUseBytes, "nothing of the failed fetches is held");
        var back = new byte[mine.Length];
        await consumer.GetAsync(kept, back).WaitAsync(Bound);
        CollectionAssert.AreEqual(mine, back, "the node serves its own data on");
    }
    /// <summary>
    /// A consumer on node 2 may ask before its producer on node 1 has published: the fetch waits on
    /// node 1 as a local Get would (the Get's own wait), then brings the bytes.
    /// </summary>
    [TestMethod]
    public async Task A_get_on_another_node_waits_for_the_producers_publish()
    {
        var random = Seeds.Create(TestContext);
        await using var one = await StartAsync(1);
        await using var two = await StartAsync(2, PeerAt(1, one));
        var producer = await one.ConnectAsync(inProcess: false);
        var consumer = await two.ConnectAsync(inProcess: false);
        byte[] data = random.Bytes(random.Next(1, 2 << 20));

        await using var output = await producer.AllocateAsync(data.Length);
        var get = Task.Run(async () =>
        {
            var back = new byte[data.Length];
            await consumer.GetAsync(output.Id, back);
            return back;
        });
        await WaitUntilAsync(() => one.Node.SessionCount == 2, "node 2's fetch is connected to node 1 (and waits there)");
        Assert.IsFalse(get.IsCompleted, "the Get waits for the publish");
        using var stream = output.Device.CreateStream();
        await stream.CopyAsync(data, output.Memory);
        await producer.PublishAsync(output, stream);
        CollectionAssert.AreEqual(data, await get.WaitAsync(Bound), "the bytes published after the Get was asked");
    }

    private static Task WaitUntilAsync(Func<bool> condition, string what) => Polling.UntilAsync(condition, Bound, what);
}
