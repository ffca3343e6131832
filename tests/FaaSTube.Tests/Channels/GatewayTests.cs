using System.Diagnostics;
using FaaSTube.Channels;
using FaaSTube.Channels.Admin;
using FaaSTube.Devices;
using FaaSTube.Native;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// The network gateway (<see cref="NetworkIsolation.Process"/>): UCX runs in a process of its own,
/// so what takes UCX down takes down the gateway, never the node (this test process). Every UCX peer
/// here is a child process too: nothing of UCX runs in the test process, whatever the peers do.
/// </summary>
[TestClass]
public sealed class GatewayTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);
    private static readonly byte[] Secret = TestSecrets.Workflow;

    public TestContext TestContext { get; set; } = null!;

    /// <summary>The node's log (the gateway's lines included), shown when a test fails.</summary>
    private readonly CollectingLoggerFactory _log = new(Microsoft.Extensions.Logging.LogLevel.Information);

    [TestCleanup]
    public void ShowLog() => _log.ShowIfFailed(TestContext);

    private async Task<NodeHarness> StartAsync(Action<TubeNodeOptions>? more = null)
    {
        if (!UcxLibrary.TryLoad(out string? reason))
        {
            Assert.Inconclusive(reason);
        }

        return await NodeHarness.StartAsync(loggerFactory: _log, configure: o =>
        {
            o.NetworkListen = "127.0.0.1:0";
            o.RemoteSecrets = new Dictionary<string, byte[]> { ["wf"] = Secret };
            o.UcxSettings = new Dictionary<string, string> { ["TLS"] = "tcp", ["NET_DEVICES"] = "lo" }; // lo only: the namespace tests add and remove veth devices meanwhile
            o.HelloTimeout = TimeSpan.FromSeconds(3);
            o.Pool.SlabBytes = 64 << 20;
            more?.Invoke(o);
        });
    }

    private static Dictionary<string, string> SecretEnvironment() => new()
    {
        ["FAASTUBE_REMOTE_SECRET"] = Convert.ToHexString(Secret),
        ["UCX_TLS"] = "tcp",
        ["UCX_NET_DEVICES"] = "lo",
    };

    /// <summary>A remote client in a child process, connected (retried while a restarted gateway is not listening yet).</summary>
    private async Task<ChildProcess> StartClientAsync(NodeHarness h)
    {
        var watch = Stopwatch.StartNew();
        while (true)
        {
            var child = ChildProcess.StartWithEnvironment(SecretEnvironment(), "tube-remote", $"ucx://{h.Node.NetworkEndPoint}", "wf");
            string line = await child.ReadLineAsync();
            if (line.StartsWith("connected ", StringComparison.Ordinal))
            {
                return child;
            }

            TestContext.WriteLine($"a remote client after {watch.ElapsedMilliseconds} ms: {line}");
            child.Dispose();
            Assert.IsLessThan(Bound, watch.Elapsed, $"a remote client connects: {line}");
            await Task.Delay(200); // a pause before the next try (the gateway may be starting again)
        }
    }

    private static async Task<string> AskAsync(ChildProcess client, string command)
    {
        await client.SendLineAsync(command);
        return await client.ReadLineAsync();
    }

    /// <summary>Put from a remote client, Get back by another: the same SHA-256 both ways.</summary>
    private async Task RoundTripAsync(NodeHarness h, Random random)
    {
        var writer = await StartClientAsync(h);
        var reader = await StartClientAsync(h);
        try
        {
            int size = random.Next(1, 8 << 20);
            string[] put = (await AskAsync(writer, $"put {size} {random.Next()}")).Split(' ');
            Assert.AreEqual("id", put[0], string.Join(' ', put));
            string[] got = (await AskAsync(reader, $"get {put[1]} {size}")).Split(' ');
            Assert.AreEqual($"got {size} {put[2]}", string.Join(' ', got), "the bytes read back through the gateway are the bytes put");
        }
        finally
        {
            writer.Dispose();
            reader.Dispose();
        }
    }

    /// <summary>
    /// An attacker connects with valid tickets and vanishes mid-wireup, 200 times (UCX 1.13.1 aborts the
    /// process serving it now and then: tcp_ep.c:478, or a SIGSEGV in ucp_am_handler). The node's local
    /// clients never notice; every session the attacker left ends; the gateway comes back (on the same
    /// port) if it died, and remote clients round-trip random data through it afterwards.
    /// </summary>
    [TestMethod]
    public async Task Peers_vanishing_mid_wireup_never_take_the_node_down()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await StartAsync();
        var local = await h.ConnectAsync(inProcess: false);
        byte[] mine = random.Bytes(1 << 20);
        var id = await local.PutAsync(mine);
        int port = h.Node.NetworkEndPoint!.Port;

        for (int round = 0; round < 4; round++)
        {
            using var attacker = ChildProcess.StartWithEnvironment(SecretEnvironment(), "ucx-vanish", "127.0.0.1", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "50", random.Next().ToString(System.Globalization.CultureInfo.InvariantCulture));
            var (code, output) = await attacker.WaitAsync();
            TestContext.WriteLine($"attacker round {round}: exit {code}; gateway restarts so far {h.Node.Gateway!.Restarts}");
        }

        var back = new byte[mine.Length];
        await local.GetAsync(id, back).WaitAsync(Bound);
        CollectionAssert.AreEqual(mine, back, "a local client's data is untouched");
        await RoundTripAsync(h, random);
        Assert.AreEqual(port, h.Node.NetworkEndPoint!.Port, "a restarted gateway listens on the same port");
        await WaitForAsync(() => h.Node.SessionCount == 1, "every session the attacker opened has ended (only the local client's is left)");
    }

    /// <summary>
    /// The gateway is killed (SIGKILL) while a remote client streams Puts: the client's call fails as
    /// unavailable in bounded time, the node ends the session it relayed and gives back what it held,
    /// a local client is not disturbed, the gateway is started again and serves new remote clients.
    /// </summary>
    [TestMethod]
    public async Task A_gateway_killed_mid_transfer_ends_its_sessions_and_comes_back()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await StartAsync();
        var local = await h.ConnectAsync(inProcess: true);
        byte[] mine = random.Bytes(3 << 20);
        var id = await local.PutAsync(mine);
        long localBytes = h.Node.PoolOf(0).GetStatistics().InUseBytes;

        using var client = await StartClientAsync(h);
        await client.SendLineAsync($"put-loop {8 << 20} {random.Next()}");
        Assert.StartsWith("put ", await client.ReadLineAsync(), "the remote client's Puts run");
        int gateway = h.Node.Gateway!.ProcessId;
        Assert.AreNotEqual(0, gateway);
        Process.GetProcessById(gateway).Kill();
        var watch = Stopwatch.StartNew();
        string line;
        do
        {
            line = await client.ReadLineAsync();
        }
        while (line.StartsWith("put ", StringComparison.Ordinal));

        TestContext.WriteLine($"the remote client, {watch.ElapsedMilliseconds} ms after the kill: {line}");
        Assert.StartsWith("failed NodeUnavailable", line, "the remote client's call fails as unavailable");
        await WaitForAsync(() => h.Node.SessionCount == 1, "the relayed session ended");
        await WaitForAsync(() => h.Node.PoolOf(0).GetStatistics().InUseBytes == localBytes, "what the remote session held is given back");
        TestContext.WriteLine($"session ended and its bytes given back {watch.ElapsedMilliseconds} ms after the kill");
        var back = new byte[mine.Length];
        await local.GetAsync(id, back).WaitAsync(Bound);
        CollectionAssert.AreEqual(mine, back, "the local client's data is untouched");

        await WaitForAsync(() => h.Node.Gateway.Restarts == 1 && h.Node.Gateway.ProcessId is not 0 and var p && p != gateway, "the gateway was started again");
        TestContext.WriteLine($"gateway started again {watch.ElapsedMilliseconds} ms after the kill");
        var network = NodeStatusBuilder.Build(h.Node, 0).Network;
        Assert.IsNotNull(network, "the admin status shows the network listener");
        Assert.AreEqual(("process", 1, h.Node.Gateway.ProcessId, h.Node.NetworkEndPoint!.ToString()), (network.Isolation, network.GatewayRestarts, network.GatewayPid, network.EndPoint), "the admin status shows the gateway and its restart");
        await RoundTripAsync(h, random);
        TestContext.WriteLine($"a round trip through it done {watch.ElapsedMilliseconds} ms after the kill");
    }

    /// <summary>The node's own user at its MaxSessionsPerUser with local clients: the gateway's connections are not counted as that user's, so remote clients still get in.</summary>
    [TestMethod]
    public async Task Local_clients_at_their_user_limit_do_not_lock_remote_clients_out()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await StartAsync(o => o.MaxSessionsPerUser = 2);
        await h.ConnectAsync(inProcess: false);
        await h.ConnectAsync(inProcess: false);
        var refused = await Assert.ThrowsAsync<Exception>(() => h.ConnectAsync(inProcess: false));
        TestContext.WriteLine($"a third local client: {refused.Message}");
        StringAssert.Contains(refused.Message, "connections open");
        await RoundTripAsync(h, random);
    }

    private static Task WaitForAsync(Func<bool> condition, string what) => Polling.UntilAsync(condition, Bound, what);
}
