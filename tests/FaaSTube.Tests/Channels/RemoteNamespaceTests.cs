using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using FaaSTube.Channels;
using FaaSTube.Native;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// Remote clients across network namespaces (issue 14): the node runs here, in the root namespace,
/// listening on the test bed's host address (<see cref="NetworkNamespace"/>); the remote clients are
/// TestChild processes in the peer namespace (tests/FaaSTube.TestChild/TubeRemote.cs), over UCX's
/// TCP transport kept to the veth link. Every datum is random (seed logged) and checked by SHA-256 on
/// both sides. Skipped (inconclusive) where libucp is missing or namespaces cannot be made.
/// What bounds a failure when a peer dies or the link is cut: docs/testing.md.
/// </summary>
[TestClass]
public sealed class RemoteNamespaceTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    /// <summary>How long the node may take to end a session whose peer is gone: what "nothing hangs" means here.</summary>
    private static readonly TimeSpan FailureBound = TimeSpan.FromSeconds(60);

    /// <summary>The node's <see cref="TubeNodeOptions.RemoteIdleTimeout"/> here: a silent client is pinged after 1 s, closed after 3 s without a word.</summary>
    private static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(3);

    private static readonly byte[] Secret = TestSecrets.Workflow;

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task Random_data_of_1_byte_to_64_MiB_crosses_the_namespaces_both_ways()
    {
        await using var bed = await RemoteBed.OpenAsync(TestContext);
        var random = Seeds.Create(TestContext);
        var remote = await bed.StartClientAsync();
        // Odd sizes around the boundaries: a page, UCX's rendezvous threshold over TCP (8 KiB), the
        // remote client's part (its window's slot: 1 MiB of its 4 MiB window), the local client's part
        // (512 KiB of 2 MiB), the window, several windows and a part.
        long[] sizes = [1, 7, 4095, 4096, 4097, 8191, 8193, 65_537, (512 << 10) + 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, (3 << 20) + 5, (4 << 20) - 1, 4 << 20, (4 << 20) + 1, (8 << 20) + 4097, (16 << 20) + 1, 64 << 20];
        foreach (long size in sizes)
        {
            // Remote Put, local Get: the node's in-process client reads what came over the link.
            int seed = random.Next();
            string expected = Checksum(Data(size, seed));
            long before = bed.Bed.HostReceivedBytes;
            var (id, sent) = ParseId(await bed.AskAsync(remote, $"put {size} {seed}"));
            Assert.AreEqual(expected, sent, $"{size} bytes: the client put what the seed makes");
            var back = new byte[size];
            Assert.AreEqual(size, await bed.Local.GetAsync(id, back).WaitAsync(Bound));
            Assert.AreEqual(expected, Checksum(back), $"{size} bytes, remote Put -> local Get");
            long crossed = bed.Bed.HostReceivedBytes - before;
            Assert.IsGreaterThanOrEqualTo(size, crossed, "the bytes came over the veth link");

            // Local Put, remote Get to host.
            byte[] local = random.Bytes(size);
            var localId = await bed.Local.PutAsync(local).WaitAsync(Bound);
            before = bed.Bed.HostTransmittedBytes;
            Assert.AreEqual($"got {size} {Checksum(local)}", await bed.AskAsync(remote, $"get {localId} {size}"), $"{size} bytes, local Put -> remote Get");
            Assert.IsGreaterThanOrEqualTo(size, bed.Bed.HostTransmittedBytes - before, "the bytes went over the veth link");
            TestContext.WriteLine($"{size,10} bytes: {expected[..16]} in, {Checksum(local)[..16]} out ({crossed} bytes in on {bed.Bed.HostLink})");
        }

        // A named Put from the namespace: the workflow's local clients read the same bytes by name.
        int named = random.Next();
        byte[] model = Data((5 << 20) + 3, named);
        Assert.AreEqual($"named 1 {Checksum(model)}", await bed.AskAsync(remote, $"named model.weights {model.Length} {named}"));
        var modelBack = new byte[model.Length];
        Assert.AreEqual(model.Length, await bed.Local.GetNamedAsync("model.weights", modelBack).WaitAsync(Bound));
        Assert.AreEqual(Checksum(model), Checksum(modelBack), "remote named Put -> local named Get");

        await bed.Local.FlushAsync().WaitAsync(Bound);
        await bed.StopClientAsync(remote);
        long inUse = bed.Node.PoolOf(0).GetStatistics().InUseBytes;
        Assert.IsTrue(inUse >= model.Length && inUse < model.Length + 4096, $"every datum had one consumer, which got it; only the name stays ({inUse} bytes in use)");
    }

    /// <summary>
    /// 1 GiB each way across the namespaces (issue 14's largest size): a remote Put that the node's
    /// local client Gets, the same bytes Put locally and Got to host remotely, then a named Put of 1 GiB
    /// - 1 from the namespace read back by name remotely and locally. SHA-256 on both sides; the
    /// expected digest is computed from the seed in 1 MiB steps, so this process holds only the 1 GiB
    /// destination (which is then the local Put's source). The node's simulated GPU and its pool are
    /// sized for it. Each leg's time is logged (docs/testing.md has the figures).
    /// </summary>
    [TestMethod]
    [DoNotParallelize] // 1 GiB buffers here, 2 GiB in the child and 1-2 GiB in the pool: alone
    public async Task One_GiB_crosses_the_namespaces_both_ways_and_by_name()
    {
        const long Size = 1L << 30;
        await using var bed = await RemoteBed.OpenAsync(TestContext, o =>
        {
            o.Gpus.SimulatedMemoryBytes = 6L << 30;
            o.Pool.MaxPartitionBytes = 3L << 30;
            o.Pool.MaxPartitionCacheBytes = 3L << 30;
            o.Pool.SlabBytes = 256 << 20;
        });
        var random = Seeds.Create(TestContext);
        var remote = await bed.StartClientAsync();
        var clock = Stopwatch.StartNew();

        int seed = random.Next();
        string expected = Checksum(Size, seed);
        var put = (await bed.AskAsync(remote, $"put-timed {Size} {seed}")).Split(' ');
        Assert.AreEqual("id", put[0], string.Join(' ', put));
        Assert.AreEqual(expected, put[2], "the client put what the seed makes");
        var buffer = GC.AllocateUninitializedArray<byte>((int)Size);
        var local = Stopwatch.StartNew();
        Assert.AreEqual(Size, await bed.Local.GetAsync(TubeId.Parse(put[1]), buffer).WaitAsync(Bound));
        long localGet = local.ElapsedMilliseconds;
        Assert.AreEqual(expected, Checksum(buffer), "1 GiB: remote Put -> local Get");

        local.Restart();
        var localId = await bed.Local.PutAsync(buffer).WaitAsync(Bound);
        long localPut = local.ElapsedMilliseconds;
        var got = (await bed.AskAsync(remote, $"get-timed {localId} {Size}")).Split(' ');
        Assert.AreEqual($"got {Size} {expected}", $"{got[0]} {got[1]} {got[2]}", "1 GiB: local Put -> remote Get to host");
        TestContext.WriteLine($"1 GiB: remote Put {put[3]} ms, local Get {localGet} ms, local Put {localPut} ms, remote Get {got[3]} ms");

        // A named Put of an odd large size from the namespace, read by name remotely and locally.
        const long NamedSize = Size - 1;
        int named = random.Next();
        string namedSum = Checksum(NamedSize, named);
        var version = (await bed.AskAsync(remote, $"named-timed model.large {NamedSize} {named}")).Split(' ');
        Assert.AreEqual($"named 1 {namedSum}", $"{version[0]} {version[1]} {version[2]}", "the named Put");
        var gotNamed = (await bed.AskAsync(remote, $"get-named-timed model.large {NamedSize}")).Split(' ');
        Assert.AreEqual($"got {NamedSize} {namedSum}", $"{gotNamed[0]} {gotNamed[1]} {gotNamed[2]}", "remote named Put -> remote named Get to host");
        local.Restart();
        Assert.AreEqual(NamedSize, await bed.Local.GetNamedAsync("model.large", buffer).WaitAsync(Bound));
        long localNamed = local.ElapsedMilliseconds;
        Assert.AreEqual(namedSum, Checksum(buffer.AsSpan(0, (int)NamedSize)), "remote named Put -> local named Get");
        TestContext.WriteLine($"1 GiB - 1 by name: remote Put {version[3]} ms, remote Get {gotNamed[3]} ms, local Get {localNamed} ms; the whole test {clock.Elapsed.TotalSeconds:0.0} s");

        await bed.StopClientAsync(remote);
        await bed.Local.DeleteNamedAsync("model.large").WaitAsync(Bound);
        await bed.Local.FlushAsync().WaitAsync(Bound);
        Assert.AreEqual(0, bed.Node.PoolOf(0).GetStatistics().InUseBytes, "each datum had one consumer, which got it; the name was deleted");
    }

    [TestMethod]
    public async Task Several_remote_clients_at_once_each_get_their_own_bytes()
    {
        await using var bed = await RemoteBed.OpenAsync(TestContext);
        var random = Seeds.Create(TestContext);
        const int Clients = 4;
        var clients = await Task.WhenAll(Enumerable.Range(0, Clients).Select(_ => bed.StartClientAsync()));
        Assert.AreEqual(Clients + 1, bed.Node.SessionCount, "the remote clients and the local one");
        var inputs = Enumerable.Range(0, Clients).Select(_ => (Size: (long)random.Next(1, 8 << 20), Seed: random.Next())).ToArray();

        // Every client puts at once; then every client gets its neighbour's datum at once.
        var puts = await Task.WhenAll(clients.Select((c, i) => bed.AskAsync(c, $"put {inputs[i].Size} {inputs[i].Seed}")));
        var ids = puts.Select(ParseId).ToArray();
        for (int i = 0; i < Clients; i++)
        {
            Assert.AreEqual(Checksum(Data(inputs[i].Size, inputs[i].Seed)), ids[i].Checksum, $"client {i}'s datum");
        }

        var gets = await Task.WhenAll(clients.Select((c, i) => bed.AskAsync(c, $"get {ids[(i + 1) % Clients].Id} {inputs[(i + 1) % Clients].Size}")));
        for (int i = 0; i < Clients; i++)
        {
            int j = (i + 1) % Clients;
            Assert.AreEqual($"got {inputs[j].Size} {ids[j].Checksum}", gets[i], $"client {i} read client {j}'s datum");
        }

        foreach (var client in clients)
        {
            await bed.StopClientAsync(client);
        }

        Assert.AreEqual(1, bed.Node.SessionCount, "the local client only");
        Assert.AreEqual(0, bed.Node.PoolOf(0).GetStatistics().InUseBytes);
    }

    [TestMethod]
    public async Task A_wrong_secret_from_the_namespace_is_refused_with_access_denied()
    {
        await using var bed = await RemoteBed.OpenAsync(TestContext);
        var wrong = bed.StartClient(Encoding.UTF8.GetBytes("not the secret of workflow wf!!!"));
        string line = await bed.ReplyAsync(wrong);
        TestContext.WriteLine(line);
        StringAssert.StartsWith(line, "refused AccessDenied ", "a clear error code");
        StringAssert.Contains(line, "a wrong secret");
        Assert.AreEqual(4, (await wrong.WaitAsync()).ExitCode);
        await bed.WaitForAsync(() => bed.Node.SessionCount == 1, "the refused session ended");

        var right = await bed.StartClientAsync();
        Assert.AreEqual(2, bed.Node.SessionCount);
        await bed.StopClientAsync(right);
    }

    [TestMethod]
    public async Task A_client_killed_mid_put_leaves_nothing_on_the_node()
    {
        await using var bed = await RemoteBed.OpenAsync(TestContext);
        var (client, session) = await bed.StartClientWithSessionAsync();
        var ended = bed.Harness.SessionEnded(session);
        Assert.AreEqual("holding", await bed.AskAsync(client, $"hold {64 << 20}"));
        var held = bed.Node.PoolOf(0).GetStatistics();
        Assert.IsGreaterThanOrEqualTo(64L << 20, held.InUseBytes, "the unfinished Put holds its block");

        var clock = Stopwatch.StartNew();
        await client.KillAsync();
        await ended.WaitAsync(FailureBound);
        TestContext.WriteLine($"SIGKILL mid-Put ({held.InUseBytes} bytes held): the node ended the session after {clock.ElapsedMilliseconds} ms");
        var after = bed.Node.PoolOf(0).GetStatistics();
        Assert.AreEqual(0, after.InUseBytes, "the session's end dropped the unfinished Put");
        Assert.AreEqual(0, after.Blocks);
        Assert.AreEqual(1, bed.Node.SessionCount, "the local client only");
    }

    [TestMethod]
    public async Task A_client_killed_mid_transfer_ends_its_session_in_bounded_time()
    {
        await using var bed = await RemoteBed.OpenAsync(TestContext);
        var (client, session) = await bed.StartClientWithSessionAsync();
        var ended = bed.Harness.SessionEnded(session);
        int seed = Seeds.Create(TestContext).Next();
        Assert.AreEqual("put 1", await bed.AskAsync(client, $"put-loop {64 << 20} {seed}"));
        long moved = await bed.WaitForBytesAsync(() => bed.Bed.HostReceivedBytes, 16 << 20);

        var clock = Stopwatch.StartNew();
        await client.KillAsync();
        await ended.WaitAsync(FailureBound);
        TestContext.WriteLine($"SIGKILL with Puts under way ({moved} bytes crossed since the first): the node ended the session after {clock.ElapsedMilliseconds} ms");
        Assert.AreEqual(0, bed.Node.PoolOf(0).GetStatistics().InUseBytes, "nothing of the dead client stays in the pool");
        Assert.AreEqual(1, bed.Node.SessionCount);
    }

    /// <summary>
    /// The other direction: a remote client killed (SIGKILL) or its link cut while it Gets a 64 MiB
    /// datum to host over and over (the node's side, in the gateway, sending). The node ends the session
    /// in bounded time and gives back what it held (the Get's lease, the window): the pool is as before
    /// the client came, the datum is still the workflow's and reads back whole locally.
    /// </summary>
    [TestMethod]
    [DataRow("killed")]
    [DataRow("link cut")]
    public async Task A_client_lost_mid_get_gives_back_what_its_session_held(string how)
    {
        await using var bed = await RemoteBed.OpenAsync(TestContext);
        var random = Seeds.Create(TestContext);
        byte[] data = random.Bytes(64 << 20);
        var id = await bed.Local.PutAsync(data, new PutOptions { KeepUntilDeleted = true }).WaitAsync(Bound);
        await bed.Local.FlushAsync().WaitAsync(Bound);
        long before = bed.Node.PoolOf(0).GetStatistics().InUseBytes;
        bed.Bed.SetSysctl("net.ipv4.tcp_retries2", "5"); // the client's Get requests: bounded by its namespace's retransmissions too

        var (client, session) = await bed.StartClientWithSessionAsync();
        var ended = bed.Harness.SessionEnded(session);
        await client.SendLineAsync($"get-loop {id} {data.Length}");
        Assert.AreEqual("got 1", await bed.ReplyAsync(client), "the Gets run");
        long moved = await bed.WaitForBytesAsync(() => bed.Bed.HostTransmittedBytes, 16 << 20);

        var clock = Stopwatch.StartNew();
        if (how == "killed")
        {
            await client.KillAsync();
        }
        else
        {
            bed.Bed.SetLink(up: false);
        }

        await ended.WaitAsync(FailureBound);
        long nodeMs = clock.ElapsedMilliseconds;
        if (how != "killed")
        {
            Assert.IsLessThan(IdleTimeout * 2, clock.Elapsed, "the node's keepalive bounds it");
            string line;
            while ((line = await bed.ReplyAsync(client)).StartsWith("got ", StringComparison.Ordinal))
            {
                // Gets that finished before the cut.
            }

            TestContext.WriteLine($"the client after the cut: {line} (after {clock.ElapsedMilliseconds} ms)");
            StringAssert.StartsWith(line, "failed NodeUnavailable ", "the client's Get failed as the node being unavailable");
            Assert.IsLessThan(FailureBound, clock.Elapsed);
        }

        TestContext.WriteLine($"client {how} mid-Get ({moved} bytes sent since the first Get): the node ended the session after {nodeMs} ms");
        await bed.WaitForAsync(() => bed.Node.PoolOf(0).GetStatistics().InUseBytes == before, "the session's lease and window given back");
        Assert.AreEqual(1, bed.Node.SessionCount, "the local client only");
        var status = FaaSTube.Channels.Admin.NodeStatusBuilder.Build(bed.Node, 0);
        Assert.AreEqual(1, status.Sessions.Total, "the admin status shows the local client only");
        Assert.AreEqual(0, status.Network!.GatewayRestarts, "the gateway never died");
        var back = new byte[data.Length];
        await bed.Local.GetAsync(id, back).WaitAsync(Bound);
        Assert.AreEqual(Checksum(data), Checksum(back), "the datum is whole");
        await bed.Local.DeleteAsync(id).WaitAsync(Bound);
        Assert.AreEqual(0, bed.Node.PoolOf(0).GetStatistics().InUseBytes);
    }

    [TestMethod]
    public async Task A_link_cut_mid_transfer_fails_the_client_and_ends_the_session_in_bounded_time()
    {
        await using var bed = await RemoteBed.OpenAsync(TestContext);

        // The client sends: a connection with data unacknowledged is bounded only by TCP's retransmissions
        // (docs/testing.md); its namespace's stack gives up after 5 (the root namespace's is untouched).
        bed.Bed.SetSysctl("net.ipv4.tcp_retries2", "5");
        var (client, session) = await bed.StartClientWithSessionAsync();
        var ended = bed.Harness.SessionEnded(session);
        int seed = Seeds.Create(TestContext).Next();
        Assert.AreEqual("put 1", await bed.AskAsync(client, $"put-loop {64 << 20} {seed}"));
        long moved = await bed.WaitForBytesAsync(() => bed.Bed.HostReceivedBytes, 16 << 20);

        var clock = Stopwatch.StartNew();
        bed.Bed.SetLink(up: false);
        await ended.WaitAsync(FailureBound);
        long nodeMs = clock.ElapsedMilliseconds;
        Assert.IsLessThan(IdleTimeout * 2, clock.Elapsed, "the node's keepalive bounds it");
        string line;
        while ((line = await bed.ReplyAsync(client)).StartsWith("put ", StringComparison.Ordinal))
        {
            // Puts that finished before the cut.
        }

        TestContext.WriteLine($"link cut after {moved} bytes: the node ended the session after {nodeMs} ms; the client: {line} (after {clock.ElapsedMilliseconds} ms)");
        StringAssert.StartsWith(line, "failed NodeUnavailable ", "the client's call failed as the node being unavailable");
        Assert.IsLessThan(FailureBound, clock.Elapsed);
        Assert.AreEqual(0, bed.Node.PoolOf(0).GetStatistics().InUseBytes, "nothing of the cut-off client stays in the pool");
        Assert.AreEqual(1, bed.Node.SessionCount);
    }

    /// <summary>
    /// UCX over TCP does not notice a cut link while the node only waits (docs/testing.md): the node's
    /// keepalive does. An idle client answers the node's pings and stays connected for several idle
    /// timeouts; once the link is cut, the node ends its session within about one.
    /// </summary>
    [TestMethod]
    public async Task A_link_cut_while_the_client_is_idle_ends_the_session_by_the_idle_timeout()
    {
        await using var bed = await RemoteBed.OpenAsync(TestContext);
        var (client, session) = await bed.StartClientWithSessionAsync();
        var ended = bed.Harness.SessionEnded(session);
        var random = Seeds.Create(TestContext);
        var (id, _) = ParseId(await bed.AskAsync(client, $"put 4096 {random.Next()}"));
        await bed.Local.GetAsync(id, new byte[4096]).WaitAsync(Bound);

        // Silent for three idle timeouts: the pings keep it.
        await Task.WhenAny(ended, Task.Delay(3 * IdleTimeout));
        Assert.IsFalse(ended.IsCompleted, "an idle client that answers the pings keeps its session");
        StringAssert.StartsWith(await bed.AskAsync(client, $"put 100 {random.Next()}"), "id ", "and it still works");

        var clock = Stopwatch.StartNew();
        bed.Bed.SetLink(up: false);
        await ended.WaitAsync(FailureBound);
        TestContext.WriteLine($"link cut with the client idle: the node ended the session after {clock.ElapsedMilliseconds} ms (RemoteIdleTimeout {IdleTimeout.TotalSeconds} s)");
        Assert.IsLessThan(IdleTimeout * 2, clock.Elapsed, "bounded by the idle timeout (and its ping period)");
        long inUse = bed.Node.PoolOf(0).GetStatistics().InUseBytes;
        Assert.IsTrue(inUse is >= 100 and < 4096, $"the cut-off client's datum stays the workflow's, its window is back ({inUse} bytes in use)");
        Assert.AreEqual(1, bed.Node.SessionCount);
        await client.KillAsync();
    }

    [TestMethod]
    public void An_idle_timeout_too_short_to_ping_within_is_refused_by_the_options()
    {
        var options = new TubeNodeOptions { RemoteIdleTimeout = TimeSpan.FromMilliseconds(100) };
        var refused = Assert.ThrowsExactly<ArgumentOutOfRangeException>(options.Validate);
        Assert.AreEqual(nameof(TubeNodeOptions.RemoteIdleTimeout), refused.ParamName);
    }

    private static byte[] Data(long size, int seed)
    {
        var data = new byte[size];
        new Random(seed).NextBytes(data);
        return data;
    }

    private static (TubeId Id, string Checksum) ParseId(string line)
    {
        var words = line.Split(' ');
        Assert.IsTrue(words.Length == 3 && words[0] == "id", $"an id and a checksum, not '{line}'");
        return (TubeId.Parse(words[1]), words[2]);
    }

    private static string Checksum(ReadOnlySpan<byte> data) => Convert.ToHexString(SHA256.HashData(data));

    /// <summary>The SHA-256 of <see cref="Data"/>(size, seed) without holding it: a seeded Random makes the same bytes in steps.</summary>
    private static string Checksum(long size, int seed)
    {
        var random = new Random(seed);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var step = new byte[1 << 20];
        for (long done = 0; done < size; done += step.Length)
        {
            var part = step.AsSpan(0, (int)Math.Min(step.Length, size - done));
            random.NextBytes(part);
            hash.AppendData(part);
        }

        return Convert.ToHexString(hash.GetHashAndReset());
    }

    /// <summary>The test bed, a node listening on its host address, and the workflow's local (in-process) client.</summary>
    private sealed class RemoteBed : IAsyncDisposable
    {
        private readonly List<ChildProcess> _children = [];

        private RemoteBed(TestContext test, NetworkNamespace bed, NodeHarness harness, TubeClient local)
        {
            Test = test;
            Bed = bed;
            Harness = harness;
            Local = local;
        }

        public TestContext Test { get; }
        public NetworkNamespace Bed { get; }
        public NodeHarness Harness { get; }
        public TubeNode Node => Harness.Node;
        public TubeClient Local { get; }

        public static async Task<RemoteBed> OpenAsync(TestContext test, Action<TubeNodeOptions>? more = null)
        {
            if (!UcxLibrary.TryLoad(out string? reason))
            {
                Assert.Inconclusive($"UCX (libucp) is not installed here, so remote clients cannot be exercised: {reason}");
            }

            var bed = NetworkNamespace.TryCreate(out reason);
            if (bed is null)
            {
                Assert.Inconclusive($"network namespaces cannot be made here: {reason}");
            }

            try
            {
                var harness = await NodeHarness.StartAsync(configure: o =>
                {
                    o.NetworkListen = $"{bed.HostAddress}:0";
                    o.RemoteSecrets = new Dictionary<string, byte[]> { ["wf"] = Secret };
                    o.UcxSettings = new Dictionary<string, string> { ["TLS"] = "tcp", ["NET_DEVICES"] = bed.HostLink };
                    o.Pool.SlabBytes = 64 << 20;
                    o.RemoteIdleTimeout = IdleTimeout;
                    more?.Invoke(o);
                });
                var local = await harness.ConnectAsync(inProcess: true, workflow: "wf");
                test.WriteLine($"UCX {UcxLibrary.Version}: {bed.Name}, node listening on {harness.Node.NetworkEndPoint} ({bed.HostLink})");
                return new RemoteBed(test, bed, harness, local);
            }
            catch
            {
                bed.Dispose();
                throw;
            }
        }

        /// <summary>A remote client in the namespace with <paramref name="secret"/> in its environment (not its command line).</summary>
        public ChildProcess StartClient(byte[] secret)
        {
            var environment = new Dictionary<string, string>
            {
                ["UCX_TLS"] = "tcp",
                ["UCX_NET_DEVICES"] = Bed.PeerLink,
                ["FAASTUBE_REMOTE_SECRET"] = Convert.ToHexString(secret),
            };
            var child = ChildProcess.StartIn(Bed, environment, "tube-remote", $"ucx://{Node.NetworkEndPoint}", "wf");
            _children.Add(child);
            return child;
        }

        public async Task<ChildProcess> StartClientAsync() => (await StartClientWithSessionAsync()).Client;

        /// <summary>A remote client with the workflow's secret, connected; its session's id on the node.</summary>
        public async Task<(ChildProcess Client, long Session)> StartClientWithSessionAsync()
        {
            var child = StartClient(Secret);
            string line = await ReplyAsync(child);
            Assert.IsTrue(line.StartsWith("connected ", StringComparison.Ordinal), $"the client connected: {line}");
            return (child, long.Parse(line["connected ".Length..], System.Globalization.CultureInfo.InvariantCulture));
        }

        /// <summary>Ends a client by closing its stdin; waits (bounded) until the node has ended its session.</summary>
        public async Task StopClientAsync(ChildProcess client)
        {
            int sessions = Node.SessionCount;
            _children.Remove(client);
            client.Dispose();
            await WaitForAsync(() => Node.SessionCount < sessions, "the stopped client's session ended");
        }

        public async Task<string> AskAsync(ChildProcess client, string command)
        {
            await client.SendLineAsync(command);
            return await ReplyAsync(client);
        }

        /// <summary>The client's next reply; UCX's own log lines ("[time] [host:pid:thread] ...") are logged and skipped.</summary>
        public async Task<string> ReplyAsync(ChildProcess client)
        {
            while (true)
            {
                string line = await client.ReadLineAsync();
                if (!line.StartsWith('['))
                {
                    return line;
                }

                Test.WriteLine($"client's UCX log: {line}");
            }
        }

        public Task WaitForAsync(Func<bool> condition, string what) => Polling.UntilAsync(condition, Bound, what);

        /// <summary>Waits (bounded) until <paramref name="counter"/> has grown by <paramref name="bytes"/>; returns the growth.</summary>
        public async Task<long> WaitForBytesAsync(Func<long> counter, long bytes)
        {
            long start = counter();
            var watch = Stopwatch.StartNew();
            long now;
            while ((now = counter() - start) < bytes)
            {
                Assert.IsLessThan(Bound, watch.Elapsed, $"only {now} bytes crossed the link");
                await Task.Delay(1); // the kernel's link counters: nothing can signal them
            }

            return now;
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var child in _children)
            {
                child.Dispose();
            }

            await Harness.DisposeAsync();
            Bed.Dispose();
        }
    }
}
