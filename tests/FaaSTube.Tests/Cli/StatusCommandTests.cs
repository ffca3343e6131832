using System.Globalization;
using System.IO.Pipelines;
using System.Text.Json;
using FaaSTube.Channels;
using FaaSTube.Channels.Admin;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Cli.Views;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Cli;

/// <summary><c>faastube status</c> against a live node with known content, its JSON's documented fields, and the admin policy.</summary>
[TestClass]
public sealed class StatusCommandTests
{
    public TestContext TestContext { get; set; } = null!;

    /// <summary>Three objects of random sizes (seed logged) in two workflows; one read once by a consumer.</summary>
    private async Task<(NodeHarness Node, TubeId[] Ids, int[] Sizes)> NodeWithContentAsync()
    {
        var random = Seeds.Create(TestContext);
        int[] sizes = [random.Next(1, 3 << 20), random.Next(1, 3 << 20), random.Next(1, 3 << 20)];
        var h = await NodeHarness.StartAsync();
        var alpha = await h.ConnectAsync(inProcess: false, workflow: "alpha", function: "producer");
        var beta = await h.ConnectAsync(inProcess: false, workflow: "beta", function: "consumer");
        var first = await alpha.PutAsync(random.Bytes(sizes[0]), new PutOptions { Consumers = 2 });
        var second = await alpha.PutAsync(random.Bytes(sizes[1]), new PutOptions { KeepUntilDeleted = true });
        var third = await beta.PutAsync(random.Bytes(sizes[2]), new PutOptions { Consumers = 3, Ttl = TimeSpan.FromMinutes(5) });
        var back = new byte[sizes[0]];
        Assert.AreEqual(sizes[0], await alpha.GetAsync(first, back.AsMemory()), "one consumer of the first object");
        return (h, [first, second, third], sizes);
    }

    [TestMethod]
    public async Task Status_json_has_the_nodes_pools_sessions_workflows_objects_and_paths_with_their_documented_fields()
    {
        var (h, ids, sizes) = await NodeWithContentAsync();
        await using var _ = h;

        var (code, output, error) = await CliRun.RunAsync("status", "--socket", h.Socket, "--json");

        Assert.AreEqual(0, code, error);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.AreEqual(1, root.GetProperty("schema").GetInt32());
        Assert.AreEqual(Environment.ProcessId, root.GetProperty("processId").GetInt32(), "the node runs in this test");
        Assert.AreEqual("simulated", root.GetProperty("backend").GetString());

        var gpu = root.GetProperty("gpus").EnumerateArray().Single();
        Assert.AreEqual(0, gpu.GetProperty("index").GetInt32());
        long inUse = gpu.GetProperty("inUseBytes").GetInt64();
        Assert.IsTrue(inUse >= (long)sizes[0] + sizes[1] + sizes[2], $"in use {inUse}: the three objects are resident");
        Assert.AreEqual(gpu.GetProperty("reservedBytes").GetInt64(), inUse + gpu.GetProperty("freeBytes").GetInt64(), "reserved is in use plus free");
        Assert.IsTrue(gpu.GetProperty("slabs").GetInt32() >= 2, "a slab per workflow at least (partitions)");
        Assert.AreEqual(0, gpu.GetProperty("evictedBytes").GetInt64());

        var sessions = root.GetProperty("sessions");
        Assert.AreEqual(2, sessions.GetProperty("total").GetInt32(), "the two clients; the status's own connection is not listed");
        Assert.AreEqual(0, sessions.GetProperty("more").GetInt32());
        var bySession = sessions.GetProperty("items").EnumerateArray().ToDictionary(s => s.GetProperty("workflow").GetString()!);
        Assert.AreEqual("producer", bySession["alpha"].GetProperty("function").GetString());
        Assert.AreEqual("consumer", bySession["beta"].GetProperty("function").GetString());
        Assert.AreEqual(Environment.ProcessId, bySession["alpha"].GetProperty("pid").GetInt32());
        Assert.AreEqual(2L << 20, bySession["beta"].GetProperty("windowBytes").GetInt64());
        Assert.AreEqual(0, bySession["beta"].GetProperty("leases").GetInt32(), "no Get holds a lease after it returned");

        var workflows = root.GetProperty("workflows").GetProperty("items").EnumerateArray().ToDictionary(w => w.GetProperty("workflow").GetString()!);
        Assert.AreEqual(2, workflows.Count);
        Assert.AreEqual(2, workflows["alpha"].GetProperty("objects").GetInt32());
        Assert.AreEqual((long)sizes[0] + sizes[1], workflows["alpha"].GetProperty("bytes").GetInt64());
        Assert.AreEqual(1, workflows["beta"].GetProperty("objects").GetInt32());
        Assert.AreEqual(sizes[2], workflows["beta"].GetProperty("bytes").GetInt64());

        var objects = root.GetProperty("objects");
        Assert.AreEqual(3, objects.GetProperty("total").GetInt32());
        var byId = objects.GetProperty("items").EnumerateArray().ToDictionary(o => o.GetProperty("id").GetString()!);
        CollectionAssert.AreEqual(ids.Select(i => i.ToString()).ToList(), objects.GetProperty("items").EnumerateArray().Select(o => o.GetProperty("id").GetString()).ToList(), "oldest first");
        var first = byId[ids[0].ToString()];
        Assert.AreEqual("alpha", first.GetProperty("workflow").GetString());
        Assert.AreEqual(sizes[0], first.GetProperty("bytes").GetInt64());
        Assert.AreEqual("published", first.GetProperty("state").GetString());
        Assert.AreEqual(1, first.GetProperty("consumersLeft").GetInt32(), "two consumers, one done");
        Assert.AreEqual("gpu", first.GetProperty("where").GetString());
        Assert.AreEqual(0, first.GetProperty("gpu").GetInt32());
        Assert.AreEqual(JsonValueKind.Null, byId[ids[1].ToString()].GetProperty("consumersLeft").ValueKind, "kept until deleted");
        Assert.AreEqual(JsonValueKind.Null, byId[ids[1].ToString()].GetProperty("expiresInSeconds").ValueKind);
        Assert.AreEqual(3, byId[ids[2].ToString()].GetProperty("consumersLeft").GetInt32());
        Assert.AreEqual(300.0, byId[ids[2].ToString()].GetProperty("expiresInSeconds").GetDouble(), 1.0, "a 5-minute TTL on the node's (virtual) clock");
        Assert.AreEqual(sizes[2], byId[ids[2].ToString()].GetProperty("bytes").GetInt64());

        Assert.AreEqual(0, root.GetProperty("transfers").GetProperty("total").GetInt32(), "nothing in flight once every call returned");
        var paths = root.GetProperty("paths").EnumerateArray().ToDictionary(p => p.GetProperty("path").GetString()!);
        CollectionAssert.AreEquivalent(new[] { "zero_copy", "peer_copy", "restored", "host_staged", "node_fetch" }, paths.Keys.ToList());
        Assert.AreEqual((long)sizes[0] + sizes[1] + sizes[2], paths["host_staged"].GetProperty("receivedBytes").GetInt64(), "the three Puts");
        Assert.AreEqual(sizes[0], paths["host_staged"].GetProperty("transmittedBytes").GetInt64(), "the one Get");
        Assert.AreEqual(0, paths["zero_copy"].GetProperty("transmittedBytes").GetInt64());

        var parsed = TubeAdmin.Parse(System.Text.Encoding.UTF8.GetBytes(output));
        Assert.AreEqual(3, parsed.Objects.Items.Count, "the library reads what the tool prints");
    }

    [TestMethod]
    public async Task Status_prints_tables_with_each_workflows_objects_and_sizes()
    {
        var (h, ids, sizes) = await NodeWithContentAsync();
        await using var _ = h;

        var (code, output, error) = await CliRun.RunAsync("status", "--socket", h.Socket);

        Assert.AreEqual(0, code, error);
        TestContext.WriteLine(output);
        foreach (var heading in new[] { "GPUs", "Bytes by path since start", "Sessions (2)", "Workflows (2)", "Objects by workflow, oldest first (3)", "Transfers in flight (0)" })
        {
            StringAssert.Contains(output, heading);
        }

        for (int i = 0; i < 3; i++)
        {
            var row = output.Split('\n').SingleOrDefault(l => l.Contains(ids[i].ToString(), StringComparison.Ordinal));
            Assert.IsNotNull(row, $"object {i} has a row");
            StringAssert.Contains(row, i < 2 ? "alpha" : "beta");
            StringAssert.Contains(row, Sizes.Bytes(sizes[i]));
        }

        StringAssert.Contains(output.Split('\n').Single(l => l.Contains(ids[1].ToString(), StringComparison.Ordinal)), "kept");
        StringAssert.Contains(output.Split('\n').Single(l => l.Contains("host_staged", StringComparison.Ordinal)), Sizes.Bytes((long)sizes[0] + sizes[1] + sizes[2]));
    }

    [TestMethod]
    public async Task A_limit_lists_the_oldest_objects_and_says_how_many_more_there_are()
    {
        var (h, ids, _) = await NodeWithContentAsync();
        await using var _ = h;

        var status = await TubeAdmin.GetStatusAsync(h.Socket, limit: 1);
        Assert.AreEqual(3, status.Objects.Total);
        Assert.AreEqual(ids[0].ToString(), status.Objects.Items.Single().Id, "the oldest");
        Assert.AreEqual(2, status.Objects.More);
        Assert.AreEqual(1, status.Sessions.Items.Count);
        Assert.AreEqual(1, status.Sessions.More);
        Assert.AreEqual(1, status.Workflows.More);

        var (code, output, error) = await CliRun.RunAsync("status", "--socket", h.Socket, "--limit", "1");
        Assert.AreEqual(0, code, error);
        StringAssert.Contains(output, "2 more not listed");
    }

    [TestMethod]
    public async Task The_node_caps_every_list_whatever_the_request_asks()
    {
        await using var h = await NodeHarness.StartAsync();
        var status = NodeStatusBuilder.Build(h.Node, int.MaxValue);
        Assert.AreEqual(0, status.Objects.Total);
        var client = await h.ConnectAsync(inProcess: true, workflow: "many");
        int n = NodeStatusBuilder.MaxListed + 5;
        for (int i = 0; i < n; i++)
        {
            await client.PutAsync(new byte[1], new PutOptions { KeepUntilDeleted = true });
        }

        status = NodeStatusBuilder.Build(h.Node, int.MaxValue);
        Assert.AreEqual(n, status.Objects.Total);
        Assert.AreEqual(NodeStatusBuilder.MaxListed, status.Objects.Items.Count);
        Assert.AreEqual(5, status.Objects.More);
    }

    [TestMethod]
    public async Task A_transfer_in_flight_is_listed_with_its_tenant_slo_and_progress()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(); // chunks of 1 MiB
        var engine = h.Node.Devices[0].Engine;
        using var target = h.Node.Gpus.Devices[0].Allocate(4 << 20);
        var data = random.Bytes(4 << 20);
        var source = new Pipe(new PipeOptions(pauseWriterThreshold: 0)); // the writer never waits for the transfer to read
        var firstChunk = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var request = new FaaSTube.Transfers.TransferRequest { Tenant = "slo-tenant", Slo = TimeSpan.FromSeconds(30), Progress = new Reported(done => { if (done >= 1 << 20) firstChunk.TrySetResult(); }) };
        await source.Writer.WriteAsync(data.AsMemory(0, 1 << 20)); // the rest waits: the second chunk's read blocks
        var transfer = engine.ToDeviceAsync(source.Reader, target.Slice(0, data.Length), request).AsTask();
        await firstChunk.Task;

        var inFlight = NodeStatusBuilder.Build(h.Node, 10).Transfers;
        Assert.AreEqual(1, inFlight.Total);
        var t = inFlight.Items.Single();
        Assert.AreEqual(("slo-tenant", 30_000.0, 4L << 20, 1L << 20, "host_to_device", 0), (t.Tenant, t.SloMilliseconds, t.Bytes, t.DoneBytes, t.Direction, t.Gpu));

        await source.Writer.WriteAsync(data.AsMemory(1 << 20));
        await source.Writer.CompleteAsync();
        await transfer;
        Assert.AreEqual(0, NodeStatusBuilder.Build(h.Node, 10).Transfers.Total, "gone once it finished");
    }

    /// <summary>Progress reported in place (no synchronisation context hop).</summary>
    private sealed class Reported(Action<long> report) : IProgress<long>
    {
        public void Report(long value) => report(value);
    }

    [TestMethod]
    public async Task Only_the_nodes_own_user_and_its_admin_uids_may_ask_for_the_status()
    {
        uint self = FaaSTube.Native.Interop.Libc.getuid();
        uint admin = self + 1001, stranger = self + 1002;
        await using var h = await NodeHarness.StartAsync(configure: o => o.AdminUids = [admin]);
        Assert.IsTrue(h.Node.MayAdminister(self), "the node's own user");
        Assert.IsTrue(h.Node.MayAdminister(admin), "an admin uid");
        Assert.IsFalse(h.Node.MayAdminister(stranger), "any other user");
        await using var plain = await NodeHarness.StartAsync();
        Assert.IsFalse(plain.Node.MayAdminister(admin), "no admin uids by default");

        // The request as the node serves it, from a connection whose SO_PEERCRED uid is the stranger's.
        var (type, payload) = await AskAsStatusAsync(h.Node, stranger);
        Assert.AreEqual(FrameType.Error, type);
        var refusal = Payload.Read<Error>(payload);
        Assert.AreEqual(TubeError.AccessDenied, refusal.Code);
        StringAssert.Contains(refusal.Message, $"User {stranger.ToString(CultureInfo.InvariantCulture)} may not ask for this node's status");

        (type, payload) = await AskAsStatusAsync(h.Node, admin);
        Assert.AreEqual(FrameType.Ok, type, "an admin uid is answered");
        Assert.AreEqual(1, TubeAdmin.Parse(Payload.Read<StatusOk>(payload).Json).Schema);
    }

    [TestMethod]
    public async Task An_admin_uid_that_may_not_use_the_node_gets_the_status_but_its_hello_is_refused()
    {
        uint admin = FaaSTube.Native.Interop.Libc.getuid() + 1001;
        await using var h = await NodeHarness.StartAsync(configure: o => o.AdminUids = [admin]);
        var hello = Payload.Writer(new Hello(Frames.Version, "wf", "f", 1 << 20, 0)).Memory.ToArray();

        var (type, payload) = await AskAsync(h.Node, admin, FrameType.Hello, hello, helloRefusal: $"User {admin} may not use this node.");

        Assert.AreEqual(FrameType.Error, type);
        Assert.AreEqual(new Error(TubeError.AccessDenied, $"User {admin} may not use this node."), Payload.Read<Error>(payload));
        (type, _) = await AskAsync(h.Node, admin, FrameType.Status, Payload.Writer(new Status(Frames.Version, 10)).Memory.ToArray(), helloRefusal: $"User {admin} may not use this node.");
        Assert.AreEqual(FrameType.Ok, type, "the same connection kind asking for the status is answered");
    }

    /// <summary>A Status frame through the node's own handshake code on a session with the given uid (a second real user is not needed).</summary>
    private static Task<(FrameType Type, byte[] Payload)> AskAsStatusAsync(TubeNode node, uint uid) =>
        AskAsync(node, uid, FrameType.Status, Payload.Writer(new Status(Frames.Version, 10)).Memory.ToArray(), helloRefusal: null);

    /// <summary>A first frame through the node's own handshake code on a session with the given uid, and the node's answer.</summary>
    private static async Task<(FrameType Type, byte[] Payload)> AskAsync(TubeNode node, uint uid, FrameType first, byte[] request, string? helloRefusal)
    {
        var toNode = new Pipe();
        var fromNode = new Pipe();
        var session = new NodeSession(node, id: 1_000_000 + uid, pid: 1, uid, inProcess: false);
        new FramedSession(session, toNode.Reader, fromNode.Writer, _ => Task.FromResult<HelloFrame?>(new HelloFrame(first, 7, request, [])), transport: null)
            .Start(refusal: null, helloRefusal, CancellationToken.None);
        var frame = await Frames.ReadAsync(fromNode.Reader, 1 << 24, CancellationToken.None);
        await session.Completion;
        Assert.IsNotNull(frame);
        Assert.AreEqual(7u, frame.Value.RequestId);
        return (frame.Value.Type, frame.Value.Payload);
    }

    [TestMethod]
    public void A_status_request_after_hello_is_refused_as_an_unknown_request()
    {
        var e = Assert.ThrowsExactly<TubeException>(() => Requests.Decode(FrameType.Status, Payload.Writer(new Status(Frames.Version, 1)).Memory.Span));
        Assert.AreEqual(TubeError.BadRequest, e.Error);
    }
}
