using System.Diagnostics;
using System.Net;
using System.Reflection;
using System.Text;
using FaaSTube.Channels;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Remote;
using FaaSTube.Devices;
using FaaSTube.Native;
using FaaSTube.Native.Ucx;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>Review: a hostile network peer against the node's UCX listener.</summary>
[TestClass]
public sealed class RemoteHostileTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private static readonly Dictionary<string, string> Tcp = new() { ["TLS"] = "tcp" };
    private static readonly byte[] Secret = Encoding.UTF8.GetBytes("the secret of workflow wf, 32 b!");

    public TestContext TestContext { get; set; } = null!;

    private sealed class Attacker : IAsyncDisposable
    {
        public UcxContext Context = null!;
        public UcxWorker Worker = null!;
        public UcxEndpoint Endpoint = null!;
        public ulong Session;

        public static async Task<Attacker> ConnectAsync(int port, bool readChallenge = true, IReadOnlyDictionary<string, string>? settings = null)
        {
            var a = new Attacker { Context = UcxContext.Create(settings ?? Tcp) };
            a.Worker = UcxWorker.Create(a.Context, "attacker");
            a.Endpoint = await UcxEndpoint.ConnectAsync(a.Worker, new IPEndPoint(IPAddress.Loopback, port));
            if (readChallenge)
            {
                var challenge = new byte[256];
                var m = await a.Endpoint.ReceiveAsync(challenge, RemoteWire.Tag(RemoteKind.Challenge, 0), RemoteWire.KindOnly).WaitAsync(Bound);
                a.Session = RemoteWire.ReadChallenge(challenge.AsSpan(0, (int)m.Length)).Session;
            }

            return a;
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                await Endpoint.CloseAsync(force: true).WaitAsync(TimeSpan.FromSeconds(5));
            }
            catch (Exception)
            {
            }

            Worker.Dispose();
            Context.Dispose();
        }
    }

    private static RemoteListener Network(TubeNode node) =>
        (RemoteListener)typeof(TubeNode).GetField("_network", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(node)!;

    /// <summary>The listener's worker (it only listens: no session's message may ever reach it).</summary>
    private static UcxWorker ListenerWorker(TubeNode node) =>
        (UcxWorker)typeof(RemoteListener).GetField("_worker", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(Network(node))!;

    private static TubeClientOptions ClientOptions(int port) => new()
    {
        Address = $"ucx://127.0.0.1:{port}",
        RemoteSecret = Secret,
        Workflow = "wf",
        Function = "f",
        WindowBytes = 1 << 20,
        UcxSettings = Tcp,
        CallTimeout = TimeSpan.FromSeconds(30),
        Gpus = new GpuSystemOptions { Backend = GpuBackend.Simulated },
    };

    /// <summary>Nothing matching <paramref name="tag"/> waits in <paramref name="worker"/>'s unexpected queue.</summary>
    private static async Task AssertNothingWaitsAsync(UcxWorker worker, ulong tag, ulong mask, string what)
    {
        var back = new byte[1 << 20];
        using var quiet = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        try
        {
            var got = await worker.ReceiveAsync(back, tag, mask, null, quiet.Token);
            Assert.Fail($"{what}: a message of {got.Length} bytes (tag 0x{got.Tag:x}) was waiting");
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static async Task<NodeHarness> StartAsync(Action<TubeNodeOptions>? more = null)
    {
        if (!UcxLibrary.TryLoad(out string? reason))
        {
            Assert.Inconclusive(reason);
        }

        return await NodeHarness.StartAsync(configure: o =>
        {
            o.NetworkListen = "127.0.0.1:0";
            o.RemoteSecrets = new Dictionary<string, byte[]> { ["wf"] = Secret };
            o.UcxSettings = Tcp;
            more?.Invoke(o);
        });
    }

    private static async Task WaitForAsync(Func<bool> condition, string what)
    {
        var watch = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.IsLessThan(Bound, watch.Elapsed, what);
            await Task.Delay(20);
        }
    }

    /// <summary>A message an unauthenticated peer sent with a tag no receive matches lands in its session's own worker (never the listener's) and goes with it when the session ends.</summary>
    [TestMethod]
    public async Task Unmatched_message_of_an_unauthenticated_peer_dies_with_its_session()
    {
        await using var h = await StartAsync(o => o.HelloTimeout = TimeSpan.FromSeconds(3));
        int port = h.Node.NetworkEndPoint!.Port;
        var a = await Attacker.ConnectAsync(port);
        Assert.AreEqual(1, Network(h.Node).LiveWorkers, "the connection has a worker of its own");
        ulong stray = RemoteWire.Tag((RemoteKind)7, a.Session ^ 0x5A5A5A, 0);
        await a.Endpoint.SendAsync(Encoding.ASCII.GetBytes("left in the node's unexpected queue"), stray).WaitAsync(Bound);
        await Task.Delay(300);
        await AssertNothingWaitsAsync(ListenerWorker(h.Node), 0, 0, "the listener's worker, while the session lives");
        await a.DisposeAsync();
        await WaitForAsync(() => h.Node.SessionCount == 0, "the attacker's session ended");
        await WaitForAsync(() => Network(h.Node).LiveWorkers == 0, "the session's worker (and its unexpected queue) was destroyed");
        await AssertNothingWaitsAsync(ListenerWorker(h.Node), 0, 0, "the listener's worker, after the session");
        Assert.AreEqual(0, Network(h.Node).Handshakes);
    }

    /// <summary>How much node memory one unauthenticated peer can leave behind (eager messages: the attacker chooses RNDV_THRESH).</summary>
    [TestMethod]
    [DoNotParallelize] // measures the process's memory: alone
    public async Task Unauthenticated_peers_messages_are_freed_with_its_session()
    {
        await using var h = await StartAsync(o => o.HelloTimeout = TimeSpan.FromSeconds(50));
        int port = h.Node.NetworkEndPoint!.Port;
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long before = Process.GetCurrentProcess().WorkingSet64;
        const int Messages = 512;
        const int Size = 256 << 10; // 128 MiB in all
        var a = await Attacker.ConnectAsync(port, settings: new Dictionary<string, string> { ["TLS"] = "tcp", ["RNDV_THRESH"] = "inf" });
        var payload = new byte[Size];
        var sends = new List<Task>();
        for (int i = 0; i < Messages; i++)
        {
            sends.Add(a.Endpoint.SendAsync(payload, RemoteWire.Tag((RemoteKind)7, (ulong)i + 1, 0)));
        }

        await Task.WhenAll(sends).WaitAsync(Bound);
        await Task.Delay(500);
        long during = Process.GetCurrentProcess().WorkingSet64;
        await a.DisposeAsync();
        await WaitForAsync(() => h.Node.SessionCount == 0 && Network(h.Node).LiveWorkers == 0, "the attacker's session and worker ended");
        await Task.Delay(1000);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long after = Process.GetCurrentProcess().WorkingSet64;
        TestContext.WriteLine($"RSS {before >> 20} MiB -> {during >> 20} MiB with 128 MiB of unmatched messages sent -> {after >> 20} MiB after the attacker left and its session ended");
        Assert.AreEqual(0, Network(h.Node).LiveWorkers, "the session's worker is gone");
        Assert.IsGreaterThan(64L << 20, during - after, "what the node buffered while the peer was there was freed when its session ended");
        Assert.IsLessThan(64L << 20, after - before, $"the node kept {(after - before) >> 20} MiB of an ended session's messages");
    }

    /// <summary>Connections that never authenticate do not count towards MaxSessionsPerUser: a legitimate client gets in past 12 silent peers; past MaxRemoteHandshakes the listener rejects (no session, no worker).</summary>
    [TestMethod]
    public async Task Silent_unauthenticated_peers_do_not_lock_out_legitimate_remote_clients()
    {
        await using var h = await StartAsync(o =>
        {
            o.MaxSessionsPerUser = 4;
            o.MaxRemoteHandshakes = 16;
            o.HelloTimeout = TimeSpan.FromSeconds(30);
        });
        int port = h.Node.NetworkEndPoint!.Port;
        var attackers = new List<Attacker>();
        try
        {
            for (int i = 0; i < 12; i++)
            {
                attackers.Add(await Attacker.ConnectAsync(port));
            }

            Assert.AreEqual(12, Network(h.Node).Handshakes);
            await using (var legitimate = await TubeClient.ConnectAsync(ClientOptions(port)).WaitAsync(Bound))
            {
                var id = await legitimate.PutAsync(new byte[100]).WaitAsync(Bound);
                Assert.AreEqual(1, Network(h.Node).Authenticated);
            }

            for (int i = 12; i < 16; i++)
            {
                attackers.Add(await Attacker.ConnectAsync(port));
            }

            await WaitForAsync(() => Network(h.Node).Handshakes == 16, "16 handshakes under way");
            long rejectedBefore = Network(h.Node).Rejected;
            int sessionsBefore = h.Node.SessionCount;
            var over = await Attacker.ConnectAsync(port, readChallenge: false);
            try
            {
                var failed = await over.Endpoint.Failed.WaitAsync(Bound);
                TestContext.WriteLine($"the 17th connection: {failed.Message}");
                Assert.AreEqual(rejectedBefore + 1, Network(h.Node).Rejected, "rejected by the listener");
                Assert.AreEqual(sessionsBefore, h.Node.SessionCount, "no session for a rejected connection");
                Assert.AreEqual(16, Network(h.Node).LiveWorkers, "no worker for a rejected connection");
            }
            finally
            {
                await over.DisposeAsync();
            }

            var refused = await Assert.ThrowsExactlyAsync<TubeException>(() => TubeClient.ConnectAsync(ClientOptions(port)).WaitAsync(Bound));
            TestContext.WriteLine($"a client while 16 handshakes are under way: {refused.Message}");
            Assert.AreEqual(TubeError.AccessDenied, refused.Error);
        }
        finally
        {
            foreach (var a in attackers)
            {
                await a.DisposeAsync();
            }
        }

        await WaitForAsync(() => h.Node.SessionCount == 0 && Network(h.Node).LiveWorkers == 0, "every session and worker ended");
        Assert.AreEqual(0, Network(h.Node).Handshakes);
    }

    /// <summary>The remote limit counts authenticated sessions and is checked after the proof: at the limit, the next connection is rejected at the listener (or refused after its proof in a race); one ending frees a place.</summary>
    [TestMethod]
    public async Task Authenticated_remote_sessions_are_bounded_by_MaxRemoteSessions()
    {
        await using var h = await StartAsync(o => o.MaxRemoteSessions = 2);
        int port = h.Node.NetworkEndPoint!.Port;
        var first = await TubeClient.ConnectAsync(ClientOptions(port)).WaitAsync(Bound);
        await using var second = await TubeClient.ConnectAsync(ClientOptions(port)).WaitAsync(Bound);
        Assert.AreEqual(2, Network(h.Node).Authenticated);
        var refused = await Assert.ThrowsExactlyAsync<TubeException>(() => TubeClient.ConnectAsync(ClientOptions(port)).WaitAsync(Bound));
        TestContext.WriteLine($"a third client: {refused.Message}");
        Assert.AreEqual(TubeError.AccessDenied, refused.Error);
        Assert.AreEqual(2, Network(h.Node).Authenticated);
        await first.DisposeAsync();
        await WaitForAsync(() => Network(h.Node).Authenticated == 1, "the first session ended");
        await using var third = await TubeClient.ConnectAsync(ClientOptions(port)).WaitAsync(Bound);
        await third.PutAsync(new byte[10]).WaitAsync(Bound);
    }

    /// <summary>A peer whose worker never progresses after connecting: is the HelloTimeout enforced?</summary>
    [TestMethod]
    public async Task A_frozen_peer_is_closed_after_HelloTimeout()
    {
        await using var h = await StartAsync(o => o.HelloTimeout = TimeSpan.FromSeconds(1));
        int port = h.Node.NetworkEndPoint!.Port;
        var a = new Attacker { Context = UcxContext.Create(Tcp) };
        a.Worker = UcxWorker.Create(a.Context, "frozen");
        using var thaw = new ManualResetEventSlim();
        a.Endpoint = await UcxEndpoint.ConnectAsync(a.Worker, new IPEndPoint(IPAddress.Loopback, port));
        var spin = Stopwatch.StartNew();
        while (h.Node.SessionCount == 0 && spin.Elapsed < Bound)
        {
        }

        a.Worker.Post(() => thaw.Wait(), _ => { }); // the peer's progress thread stops here, once the node accepted it
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(10));
            TestContext.WriteLine($"sessions 10 s after a 1 s HelloTimeout: {h.Node.SessionCount}");
            Assert.AreEqual(0, h.Node.SessionCount, "a peer that stopped progressing is closed at the handshake's deadline");
        }
        finally
        {
            thaw.Set();
            await a.DisposeAsync();
        }
    }

    /// <summary>An unauthenticated endpoint that knows (sniffs or guesses) a session's tag bits cannot run requests in that session: its messages land in its own session's worker.</summary>
    [TestMethod]
    public async Task Another_endpoint_with_a_sessions_tag_cannot_inject_requests()
    {
        await using var h = await StartAsync(o => o.HelloTimeout = TimeSpan.FromSeconds(30));
        int port = h.Node.NetworkEndPoint!.Port;
        var options = new TubeClientOptions
        {
            Address = $"ucx://127.0.0.1:{port}",
            RemoteSecret = Secret,
            Workflow = "wf",
            Function = "f",
            WindowBytes = 1 << 20,
            UcxSettings = Tcp,
            CallTimeout = TimeSpan.FromSeconds(30),
            Gpus = new GpuSystemOptions { Backend = GpuBackend.Simulated },
        };
        await using var victim = await TubeClient.ConnectAsync(options).WaitAsync(Bound);
        var id = await victim.PutAsync(new byte[5000], new PutOptions { KeepUntilDeleted = true }).WaitAsync(Bound);

        // The victim's session bits (what a sniffer reads in the challenge, or a guesser finds in 2^40 / sessions tries).
        var connection = typeof(TubeClient).GetField("_connection", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(victim)!;
        ulong session = (ulong)connection.GetType().GetField("_session", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(connection)!;

        await using var a = await Attacker.ConnectAsync(port); // never authenticates
        var payload = new PayloadWriter();
        new FaaSTube.Channels.Protocol.Messages.Delete(id).Write(payload);
        await a.Endpoint.SendAsync(Frames.Encode(FrameType.Delete, 0x8000_0001, payload.Memory.Span), RemoteWire.Tag(RemoteKind.Request, session)).WaitAsync(Bound);
        await a.Endpoint.SendAsync(Frames.Encode(FrameType.Delete, 0x8000_0002, payload.Memory.Span), RemoteWire.Tag(RemoteKind.Hello, session)).WaitAsync(Bound);
        await Task.Delay(1000);
        await victim.WhereAsync(id).WaitAsync(Bound); // still there
        await victim.DeleteAsync(id).WaitAsync(Bound);
        var gone = await Assert.ThrowsExactlyAsync<TubeException>(() => victim.WhereAsync(id).WaitAsync(Bound));
        Assert.AreEqual(TubeError.NotFound, gone.Error);
    }
    /// <summary>
    /// A node and a peer whose progress thread stops after <c>k</c> progress rounds from its connect
    /// (k = 0, 1, 2, 4, ...: the first k with which the node sees the connection request, so the peer
    /// freezes as early in the wireup as it can while the node has accepted it).
    /// </summary>
    private async Task<(NodeHarness Node, Attacker Peer, ManualResetEventSlim Thaw)> FrozenDuringWireupAsync(TimeSpan helloTimeout)
    {
        for (int rounds = 0; rounds <= 256; rounds = Math.Max(1, rounds * 2))
        {
            var h = await StartAsync(o => o.HelloTimeout = helloTimeout);
            var a = new Attacker { Context = UcxContext.Create(Tcp) };
            a.Worker = UcxWorker.Create(a.Context, "frozen");
            var thaw = new ManualResetEventSlim();
            int left = rounds;
            void Freeze()
            {
                if (left-- > 0)
                {
                    a.Worker.Post(Freeze, _ => { }); // after one more progress round
                    return;
                }

                thaw.Wait();
            }

            a.Endpoint = await UcxEndpoint.ConnectAsync(a.Worker, new IPEndPoint(IPAddress.Loopback, h.Node.NetworkEndPoint!.Port));
            a.Worker.Post(Freeze, _ => { });
            var watch = Stopwatch.StartNew();
            while (h.Node.SessionCount == 0 && watch.Elapsed < TimeSpan.FromSeconds(2))
            {
                await Task.Delay(10);
            }

            if (h.Node.SessionCount > 0)
            {
                TestContext.WriteLine($"frozen after {rounds} progress rounds; the node accepted it after {watch.ElapsedMilliseconds} ms");
                return (h, a, thaw);
            }

            thaw.Set();
            await a.DisposeAsync();
            await h.DisposeAsync();
            thaw.Dispose();
        }

        Assert.Inconclusive("the node never saw a connection from a peer frozen that early");
        throw new InvalidOperationException();
    }

    /// <summary>A peer frozen right after it asked to connect (before the UCX wireup completes): the handshake's deadline, from the accept, closes it.</summary>
    [TestMethod]
    public async Task A_peer_frozen_during_wireup_is_closed_after_HelloTimeout()
    {
        var (h, a, thaw) = await FrozenDuringWireupAsync(TimeSpan.FromSeconds(1));
        await using var node = h;
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(6)); // 1 s deadline, then at most 2 s of the worker's end
            Assert.AreEqual(0, h.Node.SessionCount, "a peer that froze during wireup is closed at the handshake's deadline");
            Assert.AreEqual(0, Network(h.Node).LiveWorkers, "and its worker is gone");
            Assert.AreEqual(0, Network(h.Node).Handshakes);
        }
        finally
        {
            thaw.Set();
            await a.DisposeAsync();
            thaw.Dispose();
        }
    }

    /// <summary>The node's stop with a peer frozen during wireup and a deadline far away: the stop closes its endpoint by force and never waits on the peer.</summary>
    [TestMethod]
    public async Task The_node_stops_while_a_peer_is_frozen_during_wireup()
    {
        var (h, a, thaw) = await FrozenDuringWireupAsync(TimeSpan.FromSeconds(120));
        try
        {
            await Task.Delay(500);
            Assert.AreEqual(1, h.Node.SessionCount, "the deadline is far: only the stop can end it");
            var watch = Stopwatch.StartNew();
            var stop = h.DisposeAsync().AsTask();
            var done = await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(10)));
            Assert.AreSame(stop, done, "TubeNode.DisposeAsync does not wait on a remote peer frozen during wireup");
            await stop;
            TestContext.WriteLine($"the node stopped in {watch.ElapsedMilliseconds} ms");
        }
        finally
        {
            thaw.Set();
            await a.DisposeAsync();
            thaw.Dispose();
        }
    }

    /// <summary>The node's stop with an authenticated client whose progress thread froze: the stop never waits on it.</summary>
    [TestMethod]
    public async Task The_node_stops_while_an_authenticated_peer_is_frozen()
    {
        var h = await StartAsync();
        var client = await TubeClient.ConnectAsync(ClientOptions(h.Node.NetworkEndPoint!.Port)).WaitAsync(Bound);
        var connection = typeof(TubeClient).GetField("_connection", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(client)!;
        var worker = (UcxWorker)connection.GetType().GetField("_worker", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(connection)!;
        using var thaw = new ManualResetEventSlim();
        var put = client.PutAsync(new byte[4 << 20]); // in flight
        worker.Post(() => thaw.Wait(), _ => { });
        try
        {
            await Task.Delay(500);
            var watch = Stopwatch.StartNew();
            var stop = h.DisposeAsync().AsTask();
            var done = await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(15)));
            Assert.AreSame(stop, done, "TubeNode.DisposeAsync does not wait on a frozen authenticated peer");
            await stop;
            TestContext.WriteLine($"the node stopped in {watch.ElapsedMilliseconds} ms");
        }
        finally
        {
            thaw.Set();
            await Task.WhenAny(put, Task.Delay(TimeSpan.FromSeconds(30)));
            await client.DisposeAsync().AsTask().WaitAsync(Bound);
        }
    }

    /// <summary>Amplification: tiny unmatched messages are freed with their session's worker.</summary>
    [TestMethod]
    [DoNotParallelize] // measures the process's memory: alone
    public async Task Tiny_unmatched_messages_are_freed_with_their_session()
    {
        await using var h = await StartAsync(o => o.HelloTimeout = TimeSpan.FromSeconds(50));
        int port = h.Node.NetworkEndPoint!.Port;
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long before = Process.GetCurrentProcess().WorkingSet64;
        const int Messages = 20000;
        var a = await Attacker.ConnectAsync(port);
        var payload = new byte[8];
        var sends = new List<Task>();
        for (int i = 0; i < Messages; i++)
        {
            sends.Add(a.Endpoint.SendAsync(payload, RemoteWire.Tag((RemoteKind)7, (ulong)i + 1, 0)));
        }

        await Task.WhenAll(sends).WaitAsync(Bound);
        await Task.Delay(1000);
        await a.DisposeAsync();
        await WaitForAsync(() => h.Node.SessionCount == 0 && Network(h.Node).LiveWorkers == 0, "the attacker's session and worker ended");
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long after = Process.GetCurrentProcess().WorkingSet64;
        TestContext.WriteLine($"{Messages} x 8 B: RSS {before >> 20} MiB -> {after >> 20} MiB after the session ended");
        Assert.AreEqual(0, Network(h.Node).LiveWorkers, "the session's worker is gone");
        Assert.IsLessThan(64L << 20, after - before, $"the node kept {(after - before) >> 20} MiB of an ended session's messages");
    }
}
