using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Native;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// Remote clients (issue 14, first cut): a node listening on UCX over TCP loopback (TLS=tcp, as
/// between two machines) and clients that reach it by <c>ucx://127.0.0.1:port</c> with their
/// workflow's secret. Skipped (inconclusive) where libucp is not installed; .ci/run installs libucx0.
/// Network namespaces and killed processes are a later step.
/// </summary>
[TestClass]
public sealed class RemoteClientTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private static readonly Dictionary<string, string> Tcp = new() { ["TLS"] = "tcp", ["NET_DEVICES"] = "lo" }; // lo only: the namespace tests add and remove veth devices meanwhile
    private static readonly byte[] Secret = TestSecrets.Workflow;
    private static readonly byte[] OtherSecret = Encoding.UTF8.GetBytes("the secret of workflow other wf!");

    public TestContext TestContext { get; set; } = null!;

    /// <summary>The node's log (the gateway's lines included), shown when a test fails.</summary>
    private readonly CollectingLoggerFactory _log = new(Microsoft.Extensions.Logging.LogLevel.Information);

    [TestCleanup]
    public void ShowLog() => _log.ShowIfFailed(TestContext);

    [TestMethod]
    public async Task Random_data_of_1_byte_to_64_MiB_put_and_got_to_host_round_trips()
    {
        await using var h = await StartAsync();
        await using var client = await ConnectAsync(h, windowBytes: 16 << 20);
        Assert.IsTrue(client.IsRemote);
        var random = Seeds.Create(TestContext);
        long[] sizes = [1, 7, 4095, 4096, 4097, 65_537, 1 << 20, (3 << 20) + 5, (16 << 20) + 1, 64 << 20];
        foreach (long size in sizes)
        {
            byte[] data = random.Bytes(size);
            var put = Stopwatch.StartNew();
            var id = await client.PutAsync(data).WaitAsync(Bound);
            put.Stop();
            var back = new byte[size];
            var get = Stopwatch.StartNew();
            long length = await client.GetAsync(id, back).WaitAsync(Bound);
            get.Stop();

            Assert.AreEqual(size, length);
            string expected = Checksum(data);
            Assert.AreEqual(expected, Checksum(back), $"{size} bytes");
            TestContext.WriteLine($"{size,10} bytes {expected[..16]}: put {Rate(size, put.Elapsed)}, get {Rate(size, get.Elapsed)}");
        }

        await client.FlushAsync().WaitAsync(Bound);
        Assert.AreEqual(0, h.Node.PoolOf(0).GetStatistics().InUseBytes, "each datum had one consumer, which got it");
        Assert.AreEqual(0L, client.HostBytesCopied, "over the network a Put from and a Get to ordinary memory move the bytes between it and UCX: no copy through the window");
        Assert.IsFalse(client.WindowMemory.Span.ContainsAnyExcept((byte)0), "the client's window mirror was never written");
    }

    /// <summary>Over the network too, data that fits a window slot is put and got in one request each (PutWhole, GetWhole; docs/protocol.md), straight from and into the caller's memory, through the gateway and with UCX in the node.</summary>
    [TestMethod]
    [DataRow(NetworkIsolation.Process)]
    [DataRow(NetworkIsolation.InProcess)]
    public async Task Data_that_fits_a_slot_is_put_and_got_remotely_in_one_request_each(NetworkIsolation isolation)
    {
        await using var h = await StartAsync(o => o.NetworkIsolation = isolation);
        await using var client = await ConnectAsync(h);
        var random = Seeds.Create(TestContext);
        int requests = 0;
        h.Node.RequestStarted += _ => Interlocked.Increment(ref requests);
        int slot = client.WindowSlotLength;
        foreach (int size in new[] { 1, 4096, random.Next(1, slot), slot, slot + 1 })
        {
            byte[] data = random.Bytes(size);
            await client.FlushAsync().WaitAsync(Bound);
            Volatile.Write(ref requests, 0);
            var id = await client.PutAsync(data).WaitAsync(Bound);
            int putRequests = Volatile.Read(ref requests);
            var back = new byte[size];
            await client.FlushAsync(); // the last Get's one-way Release (longer data) is applied before the count starts
            Volatile.Write(ref requests, 0);
            Assert.AreEqual(size, await client.GetAsync(id, back).WaitAsync(Bound));
            int getRequests = Volatile.Read(ref requests);
            Assert.AreEqual(Checksum(data), Checksum(back), $"{size} bytes");
            TestContext.WriteLine($"{size,9} bytes: put {putRequests} request(s), get {getRequests}");
            if (size <= slot)
            {
                Assert.AreEqual(1, putRequests, $"{size} bytes: one PutWhole");
                Assert.AreEqual(1, getRequests, $"{size} bytes: one GetWhole");
            }
        }

        await client.FlushAsync().WaitAsync(Bound);
        Assert.AreEqual(0, h.Node.PoolOf(0).GetStatistics().InUseBytes, "each datum had one consumer, which got it");
        Assert.AreEqual(0L, client.HostBytesCopied, "no copy through the window mirror");
        Assert.IsFalse(client.WindowMemory.Span.ContainsAnyExcept((byte)0), "the client's window mirror was never written");
    }

    [TestMethod]
    public async Task Data_put_remotely_is_the_workflows_for_local_clients_and_back()
    {
        await using var h = await StartAsync();
        await using var remote = await ConnectAsync(h);
        var local = await h.ConnectAsync(inProcess: true, workflow: "wf");
        var random = Seeds.Create(TestContext);
        byte[] data = random.Bytes((1 << 20) + 3);

        var id = await remote.PutAsync(data).WaitAsync(Bound);
        var back = new byte[data.Length];
        await local.GetAsync(id, back).WaitAsync(Bound);
        Assert.AreEqual(Checksum(data), Checksum(back), "remote Put, local Get");

        var localId = await local.PutAsync(data).WaitAsync(Bound);
        Array.Clear(back);
        await remote.GetAsync(localId, back).WaitAsync(Bound);
        Assert.AreEqual(Checksum(data), Checksum(back), "local Put, remote Get");
    }

    /// <summary>Names from a remote client: a named Put lands in the workflow's scope (a local client of the workflow reads the same bytes), Where and Delete work; a named Get to a GPU is refused with a clear error.</summary>
    [TestMethod]
    public async Task Named_put_where_and_delete_work_remotely()
    {
        await using var h = await StartAsync();
        await using var remote = await ConnectAsync(h);
        var local = await h.ConnectAsync(inProcess: true, workflow: "wf");
        var random = Seeds.Create(TestContext);
        byte[] data = random.Bytes((2 << 20) + 11);

        long version = await remote.PutNamedAsync("model.weights", data).WaitAsync(Bound);
        Assert.AreEqual(1, version);
        CollectionAssert.AreEqual(new[] { 0 }, (await remote.WhereNamedAsync("model.weights").WaitAsync(Bound)).ToArray());
        await using (var buffer = await local.GetNamedAsync("model.weights").WaitAsync(Bound))
        {
            using var stream = buffer.Device.CreateStream();
            Assert.AreEqual(FaaSTube.Kernels.DataChecksum.Compute(data), await stream.ChecksumAsync(buffer.Memory).AsTask().WaitAsync(Bound), "remote named Put, local named Get: the same bytes on the GPU");
        }

        var refused = await Assert.ThrowsExactlyAsync<TubeException>(() => remote.GetNamedAsync("model.weights").WaitAsync(Bound));
        TestContext.WriteLine($"a remote named Get to a GPU: {refused.Message}");
        Assert.AreEqual(TubeError.BadRequest, refused.Error);

        await remote.DeleteNamedAsync("model.weights").WaitAsync(Bound);
        var gone = await Assert.ThrowsExactlyAsync<TubeException>(() => remote.WhereNamedAsync("model.weights").WaitAsync(Bound));
        Assert.AreEqual(TubeError.NotFound, gone.Error);
    }

    [TestMethod]
    public async Task Where_release_and_delete_work_remotely()
    {
        await using var h = await StartAsync();
        await using var client = await ConnectAsync(h);
        var random = Seeds.Create(TestContext);
        byte[] data = random.Bytes(100_000);

        var pinned = await client.PutAsync(data, new PutOptions { KeepUntilDeleted = true }).WaitAsync(Bound);
        Assert.AreEqual(0, await client.WhereAsync(pinned).WaitAsync(Bound));
        await client.DeleteAsync(pinned).WaitAsync(Bound);
        var gone = await Assert.ThrowsExactlyAsync<TubeException>(() => client.WhereAsync(pinned).WaitAsync(Bound));
        Assert.AreEqual(TubeError.NotFound, gone.Error);

        // Two consumers: each Get to host releases its lease; after the second the data is gone.
        var twice = await client.PutAsync(data, new PutOptions { Consumers = 2 }).WaitAsync(Bound);
        var back = new byte[data.Length];
        await client.GetAsync(twice, back).WaitAsync(Bound);
        Assert.AreEqual(0, await client.WhereAsync(twice).WaitAsync(Bound), "one consumer left");
        await client.GetAsync(twice, back).WaitAsync(Bound);
        Assert.AreEqual(Checksum(data), Checksum(back));
        Assert.AreEqual(TubeError.NotFound, (await Assert.ThrowsExactlyAsync<TubeException>(() => client.WhereAsync(twice).WaitAsync(Bound))).Error);

        // A Release of a lease the client does not hold goes one way and comes back as a refusal.
        var refused = new TaskCompletionSource<TubeException>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.OneWayFailed += (_, e) => refused.TrySetResult(e.Error);
        await client.ReleaseAsync(TubeId.NewId());
        var flushed = await Assert.ThrowsExactlyAsync<TubeException>(() => client.FlushAsync().WaitAsync(Bound));
        Assert.AreEqual(TubeError.NotLeased, flushed.Error);
        Assert.AreEqual(TubeError.NotLeased, (await refused.Task.WaitAsync(Bound)).Error);
    }

    [TestMethod]
    public async Task A_wrong_secret_is_refused_and_the_right_one_accepted()
    {
        await using var h = await StartAsync();
        var wrong = await Assert.ThrowsExactlyAsync<TubeException>(() => ConnectAsync(h, secret: OtherSecret));
        Assert.AreEqual(TubeError.AccessDenied, wrong.Error);
        TestContext.WriteLine(wrong.Message);
        await WaitForAsync(() => h.Node.SessionCount == 0, "the refused session ended");

        var otherWorkflow = await Assert.ThrowsExactlyAsync<TubeException>(() => ConnectAsync(h, workflow: "other", secret: Secret));
        Assert.AreEqual(TubeError.AccessDenied, otherWorkflow.Error, "a secret proves its own workflow only");

        await using var right = await ConnectAsync(h);
        Assert.AreEqual(1, h.Node.SessionCount);
        await using var other = await ConnectAsync(h, workflow: "other", secret: OtherSecret);
        Assert.AreEqual(2, h.Node.SessionCount);
    }

    [TestMethod]
    public async Task An_unknown_workflow_is_refused_like_a_wrong_secret()
    {
        await using var h = await StartAsync();
        var unknown = await Assert.ThrowsExactlyAsync<TubeException>(() => ConnectAsync(h, workflow: "nobody", secret: Secret));
        var wrong = await Assert.ThrowsExactlyAsync<TubeException>(() => ConnectAsync(h, secret: OtherSecret));

        Assert.AreEqual(TubeError.AccessDenied, unknown.Error);
        Assert.AreEqual(unknown.Message.Replace("nobody", "wf", StringComparison.Ordinal), wrong.Message, "no oracle of which workflows exist");
        await WaitForAsync(() => h.Node.SessionCount == 0, "the refused sessions ended");
    }

    [TestMethod]
    public async Task Device_gets_and_allocations_are_refused_with_a_clear_error()
    {
        await using var h = await StartAsync();
        await using var client = await ConnectAsync(h);
        var id = await client.PutAsync(new byte[5000]).WaitAsync(Bound);

        var get = await Assert.ThrowsExactlyAsync<TubeException>(() => client.GetAsync(id, 0).WaitAsync(Bound));
        Assert.AreEqual(TubeError.BadRequest, get.Error);
        StringAssert.Contains(get.Message, "a remote client reaches host data only");
        var allocate = await Assert.ThrowsExactlyAsync<TubeException>(() => client.AllocateAsync(4096).WaitAsync(Bound));
        Assert.AreEqual(TubeError.BadRequest, allocate.Error);
        StringAssert.Contains(allocate.Message, "a remote client reaches host data only");

        var back = new byte[5000];
        Assert.AreEqual(5000, await client.GetAsync(id, back).WaitAsync(Bound), "the refused Get took no lease; the host Get works");
        await client.FlushAsync().WaitAsync(Bound); // the Get's Release went one way
        Assert.AreEqual(0, h.Node.PoolOf(0).GetStatistics().InUseBytes);
    }

    [TestMethod]
    public async Task A_client_disposed_mid_put_leaves_nothing_in_the_pool()
    {
        await using var h = await StartAsync();
        var client = await ConnectAsync(h, windowBytes: 1 << 20);
        var ended = h.SessionEnded(client.SessionId);
        var random = Seeds.Create(TestContext);
        var writer = await client.CreatePutWriterAsync(32 << 20).WaitAsync(Bound);
        for (int i = 0; i < 3; i++)
        {
            var slot = writer.GetMemory();
            random.NextBytes(slot.Span);
            writer.Advance(slot.Length);
            await writer.FlushAsync().AsTask().WaitAsync(Bound);
        }

        Assert.IsGreaterThanOrEqualTo(32L << 20, h.Node.PoolOf(0).GetStatistics().InUseBytes, "the unfinished Put holds its block");
        await client.DisposeAsync();
        await ended.WaitAsync(Bound);

        var statistics = h.Node.PoolOf(0).GetStatistics();
        Assert.AreEqual(0, statistics.InUseBytes, "the session's end dropped the unfinished Put");
        Assert.AreEqual(0, statistics.Blocks);
        Assert.AreEqual(0, h.Node.SessionCount);
        await Assert.ThrowsAsync<Exception>(() => writer.CompleteAsync().WaitAsync(Bound));
    }

    [TestMethod]
    public async Task Many_remote_clients_at_once_each_get_their_own_bytes()
    {
        const int Clients = 8;

        // All handshakes at once: one workflow may have a quarter of MaxRemoteHandshakes in its handshake (more are rejected by design).
        await using var h = await StartAsync(o => o.MaxRemoteHandshakes = 4 * Clients);
        var random = Seeds.Create(TestContext);
        var inputs = Enumerable.Range(0, Clients).Select(_ => random.Bytes(random.Next(1, 4 << 20))).ToArray();
        var clients = await Task.WhenAll(Enumerable.Range(0, Clients).Select(_ => ConnectAsync(h, windowBytes: 2 << 20))).WaitAsync(Bound);
        try
        {
            Assert.AreEqual(Clients, h.Node.SessionCount);
            var ids = await Task.WhenAll(clients.Select((c, i) => c.PutAsync(inputs[i], new PutOptions { Consumers = 2 }))).WaitAsync(Bound);

            // Each client reads its own datum and its neighbour's (same workflow).
            var reads = clients.SelectMany((c, i) => new[] { (Client: c, Index: i), (Client: c, Index: (i + 1) % Clients) }).Select(async r =>
            {
                var back = new byte[inputs[r.Index].Length];
                await r.Client.GetAsync(ids[r.Index], back);
                return (r.Index, Sum: Checksum(back));
            });
            foreach (var (index, sum) in await Task.WhenAll(reads).WaitAsync(Bound))
            {
                Assert.AreEqual(Checksum(inputs[index]), sum, $"datum {index}");
            }
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }

        await WaitForAsync(() => h.Node.SessionCount == 0, "every session ended");
        Assert.AreEqual(0, h.Node.PoolOf(0).GetStatistics().InUseBytes);
    }

    [TestMethod]
    public async Task A_node_that_goes_away_fails_the_remote_clients_calls_as_unavailable()
    {
        UcxPeerLoss.RequireOptIn(); // the client's UCX, in this process, loses its peer
        var h = await StartAsync();
        await using var client = await ConnectAsync(h);
        await client.PutAsync(new byte[4096]).WaitAsync(Bound);

        await h.DisposeAsync();

        var watch = Stopwatch.StartNew();
        await Assert.ThrowsExactlyAsync<TubeNodeUnavailableException>(() => client.WhereAsync(TubeId.NewId()).WaitAsync(Bound));
        TestContext.WriteLine($"failed after {watch.Elapsed.TotalMilliseconds:0} ms");
        Assert.IsLessThan(TimeSpan.FromSeconds(20), watch.Elapsed);
    }

    [TestMethod]
    public async Task No_node_at_the_address_is_unavailable()
    {
        RequireUcx();
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        }

        var options = Options($"ucx://127.0.0.1:{port}", "wf", Secret, 1 << 20);
        options.CallTimeout = TimeSpan.FromSeconds(10);
        await Assert.ThrowsExactlyAsync<TubeNodeUnavailableException>(() => TubeClient.ConnectAsync(options).WaitAsync(Bound));
    }

    private static void RequireUcx()
    {
        if (!UcxLibrary.TryLoad(out string? reason))
        {
            Assert.Inconclusive($"UCX (libucp) is not installed here, so remote clients cannot be exercised: {reason}");
        }
    }

    private async Task<NodeHarness> StartAsync(Action<TubeNodeOptions>? more = null)
    {
        RequireUcx();
        return await NodeHarness.StartAsync(loggerFactory: _log, configure: o =>
        {
            o.NetworkListen = "127.0.0.1:0";
            o.RemoteSecrets = new Dictionary<string, byte[]> { ["wf"] = Secret, ["other"] = OtherSecret };
            o.UcxSettings = Tcp;
            o.Pool.SlabBytes = 64 << 20;
            more?.Invoke(o);
        });
    }

    private static Task<TubeClient> ConnectAsync(NodeHarness h, string workflow = "wf", byte[]? secret = null, int windowBytes = 4 << 20) =>
        TubeClient.ConnectAsync(Options($"ucx://127.0.0.1:{h.Node.NetworkEndPoint!.Port}", workflow, secret ?? Secret, windowBytes)).WaitAsync(Bound);

    private static TubeClientOptions Options(string address, string workflow, byte[] secret, int windowBytes) => new()
    {
        Address = address,
        RemoteSecret = secret,
        Workflow = workflow,
        Function = "remote-f",
        WindowBytes = windowBytes,
        UcxSettings = Tcp,
        CallTimeout = TimeSpan.FromSeconds(30),
        Gpus = new GpuSystemOptions { Backend = GpuBackend.Simulated },
    };

    private static Task WaitForAsync(Func<bool> condition, string what) => Polling.UntilAsync(condition, Bound, what);

    private static string Rate(long bytes, TimeSpan elapsed) => $"{bytes / (1024.0 * 1024) / Math.Max(elapsed.TotalSeconds, 1e-9),8:0.0} MiB/s";

    private static string Checksum(ReadOnlySpan<byte> data) => Convert.ToHexString(SHA256.HashData(data));
}
