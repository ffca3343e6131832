using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using FaaSTube.Channels;
using FaaSTube.Channels.Admin;
using FaaSTube.Native;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// Hostile remote peers against a node with its network gateway (<see cref="NetworkIsolation.Process"/>,
/// the default): each attacker is a child process (TestChild ucx-attack, tests/FaaSTube.TestChild/UcxAttack.cs)
/// that speaks the remote wire by hand and breaks one rule, so UCX runs on the attacker's side there
/// and on the node's side in the gateway, never in this process: these run in CI. Around each attack
/// a local client and a remote client (TestChild tube-remote) hold data; afterwards the node and the
/// gateway must show: the attacker told what it did wrong (or turned away) and its session ended;
/// both bystanders' data intact (SHA-256) and a new round trip through the gateway; the node's
/// sessions, pool bytes and admin status as before the attack; the gateway the same process (it did
/// not die). The in-process variants that look into the listener's counters stay in RemoteHostileTests (opt-in).
/// </summary>
[TestClass]
public sealed class GatewayHostileTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);
    private static readonly TimeSpan HelloTimeout = TimeSpan.FromSeconds(3);
    private static readonly byte[] Secret = TestSecrets.Workflow;

    public TestContext TestContext { get; set; } = null!;

    /// <summary>The node's log (the gateway's lines included), shown when a test fails.</summary>
    private readonly CollectingLoggerFactory _log = new(Microsoft.Extensions.Logging.LogLevel.Information);

    [TestCleanup]
    public void ShowLog() => _log.ShowIfFailed(TestContext);

    /// <summary>
    /// One broken rule each. <paramref name="outcome"/>: "rejected" (the listener turned the connection
    /// down: no challenge), "closed" (the session was ended), "open" (a refusal: the session goes on and
    /// answers a Sync). <paramref name="said"/>: a line the attacker must have printed (what the node told
    /// it), or "" for nothing: a peer that breaks a rule before its proof is closed without a word.
    /// </summary>
    [TestMethod]
    [DataRow("no-ticket", "rejected", "")]
    [DataRow("wrong-ticket", "rejected", "")]
    [DataRow("replayed-ticket", "rejected", "first ok ")]
    [DataRow("silent", "closed", "")]
    [DataRow("request-before-hello", "closed", "")]
    [DataRow("pong-before-hello", "closed", "")]
    [DataRow("hello-with-data", "closed", "")]
    [DataRow("big-hello", "closed", "")]
    [DataRow("two-hellos", "closed", "*")] // the first may be answered before the second arrives (then it is a request that is not one)
    [DataRow("garbage-hello", "closed", "answer error 0 BadRequest")]
    [DataRow("wrong-proof", "closed", "hello error AccessDenied")]
    [DataRow("other-workflow", "closed", "hello error AccessDenied")]
    [DataRow("huge-window", "closed", "hello error BadRequest")]
    [DataRow("tiny-window", "closed", "hello error BadRequest")]
    [DataRow("oversize-frame", "closed", "answer error 0 FrameTooLarge")]
    [DataRow("data-with-sync", "closed", "answer error 0 BadRequest")]
    [DataRow("garbage-frame", "closed", "answer error 0 BadRequest")]
    [DataRow("hello-after-open", "closed", "answer error 0 BadRequest Message 2 is not a request")]
    [DataRow("pong-with-data", "closed", "answer error 0 BadRequest A Pong carries nothing")]
    [DataRow("credit-abuse", "closed", "answer error 0 BadRequest More than 4 requests unanswered")]
    [DataRow("part-outside-window", "closed", "answer error 0 BadRequest A PutPart of 4096 bytes")]
    [DataRow("part-longer-than-its-data", "closed", "answer error 0 BadRequest A PutPart of 8192 bytes")]
    [DataRow("part-negative-offset", "closed", "answer error 0 BadRequest A PutPart of 4096 bytes")]
    [DataRow("whole-put-outside-window", "closed", "answer error 0 BadRequest A PutWhole of 4096 bytes")]
    [DataRow("whole-put-longer-than-its-data", "closed", "answer error 0 BadRequest A PutWhole of 8192 bytes")]
    [DataRow("whole-get-with-data", "closed", "answer error 0 BadRequest GetWhole carried 4096 bytes")]
    [DataRow("whole-get-outside-window", "open", "answer error 62 BadRequest Data needs at least one consumer")]
    [DataRow("oversize-put", "open", "answer error 30 TooLarge")]
    [DataRow("put-part-unknown-id", "open", "answer error 32 NotFound")]
    [DataRow("get-outside-window", "open", "answer error 36 BadRequest")]
    [DataRow("device-get", "open", "answer error 42 BadRequest Get: a remote client reaches host data only")]
    [DataRow("allocate", "open", "answer error 50 BadRequest Allocate: a remote client reaches host data only")]
    [DataRow("status", "open", "answer error 51 BadRequest")]
    [DataRow("gateway-hello-frame", "open", "answer error 54 ")]
    [DataRow("unknown-type", "open", "answer error 53 BadRequest Unknown request type 77")]
    public async Task A_hostile_peer_is_refused_and_nobody_else_notices(string scenario, string outcome, string said)
    {
        await using var bed = await Bed.StartAsync(this);
        var output = await bed.AttackAsync(scenario);
        string[] lines = output.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        TestContext.WriteLine($"{scenario}: {string.Join(" | ", lines.Select(l => l.Length > 160 ? l[..160] : l))}");

        string last = lines.LastOrDefault(l => l.StartsWith("rejected", StringComparison.Ordinal) || l.StartsWith("closed", StringComparison.Ordinal) || l is "open" or "still open" or "challenged" or "nothing") ?? "(none)";
        Assert.StartsWith(outcome, last, $"{scenario}: the node's verdict");
        if (said == "*")
        {
        }
        else if (said.Length > 0)
        {
            Assert.IsTrue(lines.Any(l => l.StartsWith(said, StringComparison.Ordinal)), $"{scenario}: the attacker was told '{said}...'");
        }
        else if (outcome == "closed")
        {
            Assert.IsFalse(lines.Any(l => l.StartsWith("answer", StringComparison.Ordinal)), $"{scenario}: before its proof a peer is closed without a word");
        }

        if (scenario == "silent")
        {
            int ms = int.Parse(last.Split(' ')[1], CultureInfo.InvariantCulture);
            Assert.IsTrue(ms >= HelloTimeout.TotalMilliseconds - 1000 && ms < HelloTimeout.TotalMilliseconds + 10_000, $"a silent peer is closed at the handshake's deadline ({ms} ms, HelloTimeout {HelloTimeout.TotalSeconds} s)");
        }

        await bed.AssertUntouchedAsync();
    }

    /// <summary>
    /// A peer (with a ticket) sends 256 MiB before any Hello: tagged messages (the gateway's UCX has no
    /// tags and drops them), eager active messages, one rendezvous active message. The gateway's peak
    /// resident memory (VmHWM of its process, reset before the flood) grows by a few MiB at most; the
    /// session is closed (at once for a message that is not a Hello, at the handshake's deadline for
    /// the tags); nobody else notices.
    /// </summary>
    [TestMethod]
    [DataRow("flood-tag-eager")]
    [DataRow("flood-am-eager")]
    [DataRow("flood-am-rndv")]
    public async Task A_peer_flooding_before_its_hello_leaves_the_gateway_bounded(string scenario)
    {
        await using var bed = await Bed.StartAsync(this);
        int gateway = bed.Node.Gateway!.ProcessId;
        File.WriteAllText($"/proc/{gateway}/clear_refs", "5"); // the peak resident size back to the current one
        long before = StatusBytes(gateway, "VmRSS");
        var output = await bed.AttackAsync(scenario);
        long peak = StatusBytes(gateway, "VmHWM");
        TestContext.WriteLine($"{scenario}: {output.ReplaceLineEndings(" | ")}; the gateway's resident {before >> 20} MiB, peak {peak >> 20} MiB (+{(peak - before) >> 10} KiB)");
        StringAssert.Contains(output, "closed", "the flooding peer's session was closed");
        Assert.IsLessThan(16L << 20, peak - before, $"{scenario}: the gateway's peak memory grew by {(peak - before) >> 20} MiB while an unauthenticated peer sent 256 MiB");
        await bed.AssertUntouchedAsync();
    }

    /// <summary>
    /// What is not bounded (docs/protocol.md, Remote clients), now in the gateway: a peer with a ticket
    /// sends one eager active message of 256 MiB in fragments before its Hello; UCX reassembles it before
    /// any handler runs, so the gateway holds what arrived until the handshake's deadline (logged, not
    /// asserted); once the session is gone, nothing of it stays resident in the gateway (asserted), and
    /// nobody else noticed.
    /// </summary>
    [TestMethod]
    public async Task An_eager_message_in_fragments_is_held_by_the_gateway_until_the_session_closes_then_freed()
    {
        await using var bed = await Bed.StartAsync(this);
        int gateway = bed.Node.Gateway!.ProcessId;
        File.WriteAllText($"/proc/{gateway}/clear_refs", "5");
        long before = StatusBytes(gateway, "VmRSS");
        var output = await bed.AttackAsync("flood-am-eager-fragments");
        long peak = StatusBytes(gateway, "VmHWM");
        StringAssert.Contains(output, "closed", "the session was closed");
        await bed.AssertUntouchedAsync(); // the session ended: its worker destroyed
        long after = StatusBytes(gateway, "VmRSS");
        TestContext.WriteLine($"one eager 256 MiB active message in fragments: {output.ReplaceLineEndings(" | ")}; the gateway's resident {before >> 20} MiB, peak {peak >> 20} MiB (+{(peak - before) >> 20} MiB held by UCX's reassembly), after the session {after >> 20} MiB");
        Assert.IsLessThan(32L << 20, after - before, $"the gateway kept {(after - before) >> 20} MiB of a closed session's partial message");
    }

    /// <summary>
    /// Peers that connect with valid tickets of four other tenants and never say Hello hold handshake
    /// places, not session places: a legitimate client of the workflow still gets in past 12 of them
    /// (MaxSessionsPerUser 4 does not count them). At MaxRemoteHandshakes (16) the listener rejects the
    /// next connection, a legitimate one too (AccessDenied, a clear line); once the silent peers are
    /// gone (killed) a legitimate client gets in again, and the node holds nothing of them.
    /// </summary>
    [TestMethod]
    public async Task Silent_peers_hold_handshake_places_only_and_leave_nothing()
    {
        var tenants = Enumerable.Range(0, 4).ToDictionary(i => $"t{i}", i => Encoding.UTF8.GetBytes($"the secret of silent tenant t{i}!!"));
        await using var h = await StartNodeAsync(o =>
        {
            o.MaxSessionsPerUser = 4;
            o.MaxRemoteHandshakes = 16;
            o.HelloTimeout = TimeSpan.FromSeconds(60);
            o.RemoteSecrets = new Dictionary<string, byte[]>(tenants) { ["wf"] = Secret };
        });
        var random = Seeds.Create(TestContext);
        var silent = new List<ChildProcess>();
        var clients = new List<ChildProcess>();
        try
        {
            async Task SilentAsync(int i)
            {
                var attacker = StartAttacker(h, tenants[$"t{i % 4}"], "silent");
                silent.Add(attacker);
                Assert.StartsWith("challenge ", await attacker.ReadLineAsync(), $"silent peer {i} is in its handshake");
            }

            for (int i = 0; i < 12; i++)
            {
                await SilentAsync(i);
            }

            var legitimate = await StartClientAsync(h, "wf", Secret);
            clients.Add(legitimate);
            await RoundTripAsync(h, legitimate, random);

            for (int i = 12; i < 16; i++)
            {
                await SilentAsync(i);
            }

            using (var over = StartAttacker(h, Secret, "silent"))
            {
                string line = await over.ReadLineAsync();
                TestContext.WriteLine($"a 17th connection: {line}");
                Assert.StartsWith("rejected ", line, "past MaxRemoteHandshakes the listener rejects");
            }

            using (var refused = ChildProcess.StartWithEnvironment(Environment(Secret), "tube-remote", $"ucx://{h.Node.NetworkEndPoint}", "wf"))
            {
                string line = await refused.ReadLineAsync();
                TestContext.WriteLine($"a client while 16 handshakes are under way: {line}");
                Assert.StartsWith("refused AccessDenied ", line);
            }

            await WaitForAsync(() => h.Node.SessionCount == 1, "the node has the legitimate session only: handshakes live in the gateway");
            foreach (var attacker in silent)
            {
                await attacker.KillAsync();
            }

            var again = await StartClientAsync(h, "wf", Secret, retry: true);
            clients.Add(again);
            await RoundTripAsync(h, again, random);
            await WaitForAsync(() => h.Node.SessionCount == 2, "the two legitimate sessions");
            Assert.AreEqual(0, h.Node.Gateway!.Restarts, "the gateway never died");
        }
        finally
        {
            silent.ForEach(c => c.Dispose());
            clients.ForEach(c => c.Dispose());
        }

        await WaitForAsync(() => h.Node.SessionCount == 0 && h.Node.PoolOf(0).GetStatistics().InUseBytes == 0, "every session ended, nothing held");
    }

    /// <summary>
    /// The remote limits through the gateway: a workflow holds at most MaxRemoteSessionsPerWorkflow (2)
    /// of the node's remote places, the node at most MaxRemoteSessions (3); past them a client is refused
    /// with AccessDenied (a clear line, exit 4) and holds nothing; another workflow still gets in while
    /// one is at its limit; a session that ends frees its place.
    /// </summary>
    [TestMethod]
    public async Task Remote_places_are_bounded_per_workflow_and_per_node()
    {
        byte[] other = Encoding.UTF8.GetBytes("the secret of another workflow!!");
        await using var h = await StartNodeAsync(o =>
        {
            o.MaxRemoteSessions = 3;
            o.MaxRemoteSessionsPerWorkflow = 2;
            o.RemoteSecrets = new Dictionary<string, byte[]> { ["wf"] = Secret, ["other"] = other };
        });
        var random = Seeds.Create(TestContext);
        var clients = new List<ChildProcess>();
        try
        {
            clients.Add(await StartClientAsync(h, "wf", Secret));
            clients.Add(await StartClientAsync(h, "wf", Secret));
            await AssertRefusedAsync(h, "wf", Secret, "a third client of the same workflow");
            clients.Add(await StartClientAsync(h, "other", other));
            await RoundTripAsync(h, clients[^1], random, "other");
            await AssertRefusedAsync(h, "other", other, "a fourth remote client of the node");
            await WaitForAsync(() => h.Node.SessionCount == 3, "the refused hold no session");

            clients[0].Dispose(); // one ends: its place is free again
            clients.RemoveAt(0);
            await WaitForAsync(() => h.Node.SessionCount == 2, "the stopped client's session ended");
            var next = await StartClientAsync(h, "other", other, retry: true);
            clients.Add(next);
            await RoundTripAsync(h, next, random, "other");
            Assert.AreEqual(0, h.Node.Gateway!.Restarts, "the gateway never died");
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }

        await WaitForAsync(() => h.Node.SessionCount == 0 && h.Node.PoolOf(0).GetStatistics().InUseBytes == 0, "every session ended, nothing held");
    }

    private async Task AssertRefusedAsync(NodeHarness h, string workflow, byte[] secret, string what)
    {
        using var refused = ChildProcess.StartWithEnvironment(Environment(secret), "tube-remote", $"ucx://{h.Node.NetworkEndPoint}", workflow);
        string line = await refused.ReadLineAsync();
        TestContext.WriteLine($"{what}: {line}");
        Assert.StartsWith("refused AccessDenied ", line, what);
        Assert.AreEqual(4, (await refused.WaitAsync()).ExitCode);
    }

    private Task<NodeHarness> StartNodeAsync(Action<TubeNodeOptions> more)
    {
        if (!UcxLibrary.TryLoad(out string? reason))
        {
            Assert.Inconclusive($"UCX (libucp) is not installed here, so the gateway cannot be attacked: {reason}");
        }

        return NodeHarness.StartAsync(loggerFactory: _log, configure: o =>
        {
            o.NetworkListen = "127.0.0.1:0";
            o.UcxSettings = new Dictionary<string, string> { ["TLS"] = "tcp", ["NET_DEVICES"] = "lo" };
            o.Pool.SlabBytes = 64 << 20;
            more(o);
        });
    }

    private static Dictionary<string, string> Environment(byte[] secret) => new()
    {
        ["FAASTUBE_REMOTE_SECRET"] = Convert.ToHexString(secret),
        ["UCX_TLS"] = "tcp",
        ["UCX_NET_DEVICES"] = "lo",
    };

    private static ChildProcess StartAttacker(NodeHarness h, byte[] secret, string scenario) =>
        ChildProcess.StartWithEnvironment(Environment(secret), "ucx-attack", "127.0.0.1", h.Node.NetworkEndPoint!.Port.ToString(CultureInfo.InvariantCulture), scenario);

    /// <summary>A remote client (TestChild tube-remote), connected; with <paramref name="retry"/>, tried again (bounded) while a place is being freed.</summary>
    private async Task<ChildProcess> StartClientAsync(NodeHarness h, string workflow, byte[] secret, bool retry = false)
    {
        var watch = Stopwatch.StartNew();
        while (true)
        {
            var child = ChildProcess.StartWithEnvironment(Environment(secret), "tube-remote", $"ucx://{h.Node.NetworkEndPoint}", workflow);
            string line = await child.ReadLineAsync();
            if (line.StartsWith("connected ", StringComparison.Ordinal))
            {
                return child;
            }

            child.Dispose();
            Assert.IsTrue(retry, $"a remote client of {workflow} connects: {line}");
            TestContext.WriteLine($"a remote client after {watch.ElapsedMilliseconds} ms: {line}");
            Assert.IsLessThan(Bound, watch.Elapsed, $"a remote client connects: {line}");
            await Task.Delay(200); // a pause before the next try (a place is being given back)
        }
    }

    /// <summary>Put from <paramref name="client"/>, read back locally: the same SHA-256.</summary>
    private static async Task RoundTripAsync(NodeHarness h, ChildProcess client, Random random, string workflow = "wf")
    {
        long size = random.Next(1, 4 << 20);
        await client.SendLineAsync($"put {size} {random.Next()}");
        var put = (await client.ReadLineAsync()).Split(' ');
        Assert.AreEqual("id", put[0], string.Join(' ', put));
        await using var local = await TubeClient.ConnectInProcessAsync(h.Node, new TubeClientOptions
        {
            SocketPath = h.Socket,
            Workflow = workflow,
            Function = "check",
            Gpus = new FaaSTube.Devices.GpuSystemOptions { Backend = h.Node.Gpus.Backend, SimulatedTopology = h.Node.Gpus.Topology },
        });
        var back = new byte[size];
        Assert.AreEqual(size, await local.GetAsync(TubeId.Parse(put[1]), back).WaitAsync(Bound));
        Assert.AreEqual(put[2], Checksum(back), "a remote Put, read back locally");
    }

    private static Task WaitForAsync(Func<bool> condition, string what) => Polling.UntilAsync(condition, Bound, what);

    /// <summary>The process's resident bytes now (VmRSS) or at their peak (VmHWM), from /proc.</summary>
    private static long StatusBytes(int pid, string field)
    {
        string line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal));
        return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) << 10;
    }

    private static string Checksum(ReadOnlySpan<byte> data) => Convert.ToHexString(SHA256.HashData(data));

    /// <summary>
    /// A node with its gateway on loopback, a local client (over the socket) and a remote client (a
    /// child) each holding a datum, and what the node looked like before the attack.
    /// </summary>
    private sealed class Bed : IAsyncDisposable
    {
        private readonly GatewayHostileTests _test;
        private readonly Random _random;
        private ChildProcess _remote = null!;
        private TubeClient _local = null!;
        private byte[] _localData = null!;
        private TubeId _localId;
        private (TubeId Id, string Checksum, long Size) _remoteDatum;
        private long _inUse;
        private int _sessions;
        private int _gateway;

        private Bed(GatewayHostileTests test, NodeHarness harness)
        {
            _test = test;
            Harness = harness;
            _random = Seeds.Create(test.TestContext);
        }

        public NodeHarness Harness { get; }

        public TubeNode Node => Harness.Node;

        public static async Task<Bed> StartAsync(GatewayHostileTests test)
        {
            if (!UcxLibrary.TryLoad(out string? reason))
            {
                Assert.Inconclusive($"UCX (libucp) is not installed here, so the gateway cannot be attacked: {reason}");
            }

            var harness = await NodeHarness.StartAsync(loggerFactory: test._log, configure: o =>
            {
                o.NetworkListen = "127.0.0.1:0";
                o.RemoteSecrets = new Dictionary<string, byte[]> { ["wf"] = Secret };
                o.UcxSettings = new Dictionary<string, string> { ["TLS"] = "tcp", ["NET_DEVICES"] = "lo" }; // lo only: the namespace tests add and remove veth devices meanwhile
                o.HelloTimeout = HelloTimeout;
                o.MaxRequestsInFlight = 4; // credits: a peer that ignores them is over at once
                o.Pool.SlabBytes = 64 << 20;
            });
            var bed = new Bed(test, harness);
            try
            {
                await bed.PrepareAsync();
                return bed;
            }
            catch
            {
                await bed.DisposeAsync();
                throw;
            }
        }

        private async Task PrepareAsync()
        {
            _local = await Harness.ConnectAsync(inProcess: false);
            _localData = _random.Bytes(_random.Next(1, 3 << 20));
            _localId = await _local.PutAsync(_localData, new PutOptions { KeepUntilDeleted = true }).WaitAsync(Bound);

            _remote = ChildProcess.StartWithEnvironment(Environment(Secret), "tube-remote", $"ucx://{Node.NetworkEndPoint}", "wf");
            string connected = await _remote.ReadLineAsync();
            Assert.StartsWith("connected ", connected, "the bystander remote client connected");
            long size = _random.Next(1, 3 << 20);
            int seed = _random.Next();
            var put = (await AskAsync($"put {size} {seed}")).Split(' ');
            Assert.AreEqual("id", put[0], string.Join(' ', put));
            _remoteDatum = (TubeId.Parse(put[1]), put[2], size);

            await _local.FlushAsync().WaitAsync(Bound);
            _sessions = Node.SessionCount;
            Assert.AreEqual(2, _sessions, "the local and the remote bystander");
            _inUse = Node.PoolOf(0).GetStatistics().InUseBytes;
            _gateway = Node.Gateway!.ProcessId;
            Assert.AreNotEqual(0, _gateway);
        }

        private async Task<string> AskAsync(string command)
        {
            await _remote.SendLineAsync(command);
            return await _remote.ReadLineAsync();
        }

        /// <summary>Runs the attacker until it exits (bounded); what it printed.</summary>
        public async Task<string> AttackAsync(string scenario)
        {
            using var attacker = ChildProcess.StartWithEnvironment(Environment(Secret), "ucx-attack", "127.0.0.1", Node.NetworkEndPoint!.Port.ToString(CultureInfo.InvariantCulture), scenario);
            var (code, output) = await attacker.WaitAsync();
            Assert.AreEqual(0, code, $"the attacker ran its scenario: {output}");
            return output;
        }

        /// <summary>What the node and the gateway must guarantee after an attack.</summary>
        public async Task AssertUntouchedAsync()
        {
            await WaitForAsync(() => Node.SessionCount == _sessions, $"the attacker's session ended ({Node.SessionCount} sessions, {_sessions} before)");
            await WaitForAsync(() => Node.PoolOf(0).GetStatistics().InUseBytes == _inUse, $"what the attacker held was given back ({Node.PoolOf(0).GetStatistics().InUseBytes} bytes in use, {_inUse} before)");
            Assert.AreEqual(_gateway, Node.Gateway!.ProcessId, "the gateway did not die");
            Assert.AreEqual(0, Node.Gateway.Restarts);

            var status = NodeStatusBuilder.Build(Node, 0);
            Assert.AreEqual(_sessions, status.Sessions.Total, "the admin status shows the bystanders' sessions only");
            Assert.IsFalse(status.Sessions.Items.Any(s => s.Function == "attacker"), "no session of the attacker in the admin status");
            Assert.AreEqual(_inUse, status.Gpus[0].InUseBytes, "the admin status shows the pool as before");
            Assert.AreEqual(("process", 0, _gateway), (status.Network!.Isolation, status.Network.GatewayRestarts, status.Network.GatewayPid));

            // The bystanders' data, and a new round trip through the gateway, each way.
            var back = new byte[_localData.Length];
            Assert.AreEqual(_localData.Length, await _local.GetAsync(_localId, back).WaitAsync(Bound));
            Assert.AreEqual(Checksum(_localData), Checksum(back), "the local client's datum");
            Assert.AreEqual($"got {_remoteDatum.Size} {_remoteDatum.Checksum}", await AskAsync($"get {_remoteDatum.Id} {_remoteDatum.Size}"), "the remote client's datum, read by itself through the gateway");
            Assert.AreEqual($"got {_localData.Length} {Checksum(_localData)}", await AskAsync($"get {_localId} {_localData.Length}"), "the local datum, read remotely");
            int seed = _random.Next();
            long size = _random.Next(1, 3 << 20);
            var put = (await AskAsync($"put {size} {seed}")).Split(' ');
            Assert.AreEqual("id", put[0], string.Join(' ', put));
            var fresh = new byte[size];
            Assert.AreEqual(size, await _local.GetAsync(TubeId.Parse(put[1]), fresh).WaitAsync(Bound));
            Assert.AreEqual(put[2], Checksum(fresh), "a remote Put after the attack, read locally");
        }

        private static Task WaitForAsync(Func<bool> condition, string what) => Polling.UntilAsync(condition, Bound, what);

        public async ValueTask DisposeAsync()
        {
            _remote?.Dispose();
            await Harness.DisposeAsync();
        }
    }
}
