using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using FaaSTube.Channels;
using FaaSTube.Channels.Admin;
using FaaSTube.Channels.Remote.Gateway;
using FaaSTube.Native;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// The network gateway's memory bound (<see cref="TubeNodeOptions.GatewayMemoryLimit"/>,
/// <see cref="GatewayMemory"/>) against a peer that floods it with eager messages far over the bound:
/// UCX reassembles each in memory it allocates before the gateway's checks see it. The attacker is a
/// child process (TestChild <c>ucx-flood</c>, UCX_RNDV_THRESH=inf and eager sends), so no UCX runs in
/// the test process, which is the node.
/// </summary>
[TestClass]
public sealed class GatewayMemoryTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(120);
    private static readonly byte[] Secret = TestSecrets.Workflow;

    /// <summary>The most the node's anonymous resident memory (RssAnon: not the simulated GPU's shared memory) may grow over the attack (it holds none of it; the GC may keep some of the test's own garbage).</summary>
    private const long NodeGrowthBound = 64L << 20;

    public TestContext TestContext { get; set; } = null!;

    private readonly CollectingLoggerFactory _log = new(Microsoft.Extensions.Logging.LogLevel.Information);

    [TestCleanup]
    public void ShowLog() => _log.ShowIfFailed(TestContext);

    /// <summary>The flood: four connections at a time, twice each way: 1 GiB messages before the proof, 192 MiB ones after it (768 MiB at once).</summary>
    private static readonly (string When, int Bytes)[] Flood = [("before", 1 << 30), ("before", 1 << 30), ("after", 192 << 20), ("after", 192 << 20)];

    private const long Limit = 512L << 20;

    /// <summary>
    /// With the gateway bounded to 512 MiB, the <see cref="Flood"/>. The node is unharmed: a local
    /// client's data reads back with the same SHA-256, the node's anonymous resident memory grows by
    /// less than 64 MiB, its log takes at most <see cref="GatewayOutputLimit.LinesPerSecond"/> of the
    /// gateway's lines a second. The gateway's peak resident memory stays within its bound, whether it
    /// refused the messages and lived or died and was started again (which the admin status counts), and
    /// remote clients round-trip through it afterwards.
    /// </summary>
    [TestMethod]
    public async Task A_flood_of_oversized_eager_messages_stays_within_the_gateways_bound()
    {
        var (peak, restarts) = await FloodAsync(Limit);
        Assert.IsLessThan(Limit + (64L << 20), peak, $"the gateway's peak resident memory ({peak >> 20} MiB) stays within its bound of {Limit >> 20} MiB (and its shared libraries)");
        TestContext.WriteLine($"bounded to {Limit >> 20} MiB: the gateway's peak resident memory {peak >> 20} MiB, {restarts} restarts");
    }

    /// <summary>
    /// The same flood against a gateway whose bound is far away (64 GiB): it grows past the bound of the
    /// test above by what the attacker sends, which is the attack the bound stops. Opt-in
    /// (FAASTUBE_GATEWAY_FLOOD_UNBOUNDED=1): it makes the gateway take gigabytes.
    /// </summary>
    [TestMethod]
    public async Task Without_a_near_bound_the_flood_grows_the_gateway_by_what_is_sent()
    {
        if (Environment.GetEnvironmentVariable("FAASTUBE_GATEWAY_FLOOD_UNBOUNDED") != "1")
        {
            Assert.Inconclusive("Opt-in (FAASTUBE_GATEWAY_FLOOD_UNBOUNDED=1): the flood makes an unbounded gateway take gigabytes of this machine's memory.");
        }

        var (peak, restarts) = await FloodAsync(64L << 30);
        TestContext.WriteLine($"bounded to 64 GiB: the gateway's peak resident memory {peak >> 20} MiB, {restarts} restarts");
        Assert.IsGreaterThan(Limit + (64L << 20), peak, "a gateway without a near bound takes more than the bounded one may");
    }

    private async Task<(long Peak, int Restarts)> FloodAsync(long limit)
    {
        var random = Seeds.Create(TestContext);
        if (!UcxLibrary.TryLoad(out string? reason))
        {
            Assert.Inconclusive(reason);
        }

        await using var h = await NodeHarness.StartAsync(loggerFactory: _log, configure: o =>
        {
            o.NetworkListen = "127.0.0.1:0";
            o.RemoteSecrets = new Dictionary<string, byte[]> { ["wf"] = Secret };
            o.UcxSettings = new Dictionary<string, string> { ["TLS"] = "tcp", ["NET_DEVICES"] = "lo" };
            o.HelloTimeout = TimeSpan.FromSeconds(15); // the attacker's messages take seconds to arrive: these end the sessions of those that never do
            o.RemoteIdleTimeout = TimeSpan.FromSeconds(15);
            o.GatewayMemoryLimit = limit;
            o.Pool.SlabBytes = 64 << 20;
        });
        var local = await h.ConnectAsync(inProcess: false);
        byte[] mine = random.Bytes(4 << 20);
        var id = await local.PutAsync(mine);
        await RoundTripAsync(h, random);
        long nodeBefore = ResidentBytes("self");
        int firstGateway = h.Node.Gateway!.ProcessId;
        Assert.AreEqual(limit, DataLimit(firstGateway), "the gateway bounded its data (RLIMIT_DATA, soft and hard) to GatewayMemoryLimit");
        int port = h.Node.NetworkEndPoint!.Port;

        var flooding = Stopwatch.StartNew();
        using var sampling = new CancellationTokenSource();
        var peak = Task.Run(() => SamplePeakAsync(h, sampling.Token));
        foreach (var (when, bytes) in Flood)
        {
            using var attacker = ChildProcess.StartWithEnvironment(
                new Dictionary<string, string> { ["FAASTUBE_REMOTE_SECRET"] = Convert.ToHexString(Secret), ["UCX_TLS"] = "tcp", ["UCX_NET_DEVICES"] = "lo", ["UCX_RNDV_THRESH"] = "inf" },
                "ucx-flood", "127.0.0.1", port.ToString(CultureInfo.InvariantCulture), when, bytes.ToString(CultureInfo.InvariantCulture), "4", "1");
            var (code, output) = await attacker.WaitAsync();
            TestContext.WriteLine($"attacker, {bytes >> 20} MiB x 4 {when} the proof: exit {code}: {string.Join(" | ", output.Split('\n').Where(l => !l.Contains("no registered callback", StringComparison.Ordinal)))}; gateway restarts so far {h.Node.Gateway.Restarts}");
        }

        await WaitForAsync(() => h.Node.SessionCount == 1, "every session the attacker opened has ended (only the local client's is left)");
        await sampling.CancelAsync();
        long gatewayPeak = await peak;
        int gatewayLines = _log.Entries.Count(e => e.Contains("Network gateway", StringComparison.Ordinal));
        TestContext.WriteLine($"the node logged {gatewayLines} lines of the gateway's in {flooding.Elapsed.TotalSeconds:0} s");
        Assert.IsLessThan((flooding.Elapsed.TotalSeconds + 2) * (GatewayOutputLimit.LinesPerSecond + 1), gatewayLines, "the node's log takes at most GatewayOutputLimit.LinesPerSecond of the gateway's lines a second (UCX prints three for each fragment it cannot take)");

        var back = new byte[mine.Length];
        await local.GetAsync(id, back).WaitAsync(Bound);
        Assert.AreEqual(Convert.ToHexString(SHA256.HashData(mine)), Convert.ToHexString(SHA256.HashData(back)), "a local client's data reads back the same");
        long nodeAfter = ResidentBytes("self");
        TestContext.WriteLine($"the node's anonymous resident memory {nodeBefore >> 20} MiB before the flood, {nodeAfter >> 20} MiB after");
        Assert.IsLessThan(NodeGrowthBound, nodeAfter - nodeBefore, "the node's resident memory does not take the flood");

        await RoundTripAsync(h, random);
        var network = NodeStatusBuilder.Build(h.Node, 0).Network;
        Assert.IsNotNull(network, "the admin status shows the network listener");
        int restarts = h.Node.Gateway.Restarts;
        Assert.AreEqual((restarts, h.Node.Gateway.ProcessId), (network.GatewayRestarts, network.GatewayPid), "the admin status shows the gateway's restarts and its process");
        Assert.AreEqual(restarts == 0, h.Node.Gateway.ProcessId == firstGateway, "the gateway lived through it, or it was started again");
        Assert.AreEqual(port, h.Node.NetworkEndPoint!.Port, "the gateway listens on the same port");
        return (gatewayPeak, restarts);
    }

    /// <summary>The highest VmHWM of every gateway process seen until <paramref name="stop"/> (a gateway started again is a new process).</summary>
    private static async Task<long> SamplePeakAsync(NodeHarness h, CancellationToken stop)
    {
        long peak = 0;
        while (!stop.IsCancellationRequested)
        {
            int pid = h.Node.Gateway!.ProcessId;
            if (pid != 0)
            {
                peak = Math.Max(peak, GatewayMemory.StatusBytes($"/proc/{pid}/status", "VmHWM:"));
            }

            await Task.Delay(20, CancellationToken.None); // a sampling period, not a wait for anything
        }

        return peak;
    }

    private static long ResidentBytes(string process) => GatewayMemory.StatusBytes($"/proc/{process}/status", "RssAnon:");

    /// <summary>A process's RLIMIT_DATA, soft and hard, from /proc/PID/limits ("Max data size  SOFT  HARD  bytes"); -1 when they differ.</summary>
    private static long DataLimit(int pid)
    {
        string[] words = File.ReadLines($"/proc/{pid}/limits").Single(l => l.StartsWith("Max data size", StringComparison.Ordinal))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return words[3] == words[4] ? long.Parse(words[3], CultureInfo.InvariantCulture) : -1;
    }

    [TestMethod]
    public void A_gateway_memory_limit_under_256_MiB_is_refused_by_the_options()
    {
        var options = new TubeNodeOptions { GatewayMemoryLimit = 255L << 20 };
        var refused = Assert.ThrowsExactly<ArgumentOutOfRangeException>(options.Validate);
        Assert.AreEqual(nameof(TubeNodeOptions.GatewayMemoryLimit), refused.ParamName);
    }

    /// <summary>A gateway told a bound it cannot keep (under what it needs to start) says why and exits before it listens: it never serves unbounded.</summary>
    [TestMethod]
    public async Task A_gateway_that_cannot_bound_its_memory_says_why_and_does_not_listen()
    {
        var config = GatewayConfigs.Alone(memoryLimit: 16L << 20);
        var (code, output, error) = await FaaSTube.Tests.Packaging.DotnetCli.RunAsync(AppContext.BaseDirectory, [Path.Combine(AppContext.BaseDirectory, GatewaySupervisor.ProgramFile)], TimeSpan.FromMinutes(1), config.ToJson() + "\n");
        TestContext.WriteLine($"exit {code}: {output}{error}");
        Assert.AreEqual(1, code, "the gateway exits 1");
        Assert.AreEqual($"failed The gateway's memory limit ({16L << 20} bytes) is under {TubeNodeOptions.MinGatewayMemoryLimit} bytes (GatewayMemoryLimit).", output.Split('\n')[0], "its one answer says why");
        StringAssert.Contains(error, "its memory could not be bounded, so it does not serve", "its log says so");
    }

    /// <summary>A remote client in a child process, connected (retried while a restarted gateway is not listening yet).</summary>
    private async Task<ChildProcess> StartClientAsync(NodeHarness h)
    {
        var watch = Stopwatch.StartNew();
        while (true)
        {
            var child = ChildProcess.StartWithEnvironment(
                new Dictionary<string, string> { ["FAASTUBE_REMOTE_SECRET"] = Convert.ToHexString(Secret), ["UCX_TLS"] = "tcp", ["UCX_NET_DEVICES"] = "lo" },
                "tube-remote", $"ucx://{h.Node.NetworkEndPoint}", "wf");
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

    /// <summary>Put from a remote client, Get back by another: the same SHA-256 both ways.</summary>
    private async Task RoundTripAsync(NodeHarness h, Random random)
    {
        using var writer = await StartClientAsync(h);
        using var reader = await StartClientAsync(h);
        int size = random.Next(1, 8 << 20);
        await writer.SendLineAsync($"put {size} {random.Next()}");
        string[] put = (await writer.ReadLineAsync()).Split(' ');
        Assert.AreEqual("id", put[0], string.Join(' ', put));
        await reader.SendLineAsync($"get {put[1]} {size}");
        Assert.AreEqual($"got {size} {put[2]}", await reader.ReadLineAsync(), "the bytes read back through the gateway are the bytes put");
    }

    private static Task WaitForAsync(Func<bool> condition, string what) => Polling.UntilAsync(condition, Bound, what);
}
