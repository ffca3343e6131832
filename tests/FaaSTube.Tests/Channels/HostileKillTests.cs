using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Kernels;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// Issue 15 acceptance: the node as a child process, client processes killed with SIGKILL at random
/// points of Put, Get (to host and mapped) and Allocate+Publish. Each kill's moment is drawn from the
/// logged seed (FAASTUBE_TEST_SEED replays the plan); every assertion waits on the node's own
/// report (its "stats" line is printed once every other session's clean-up has finished), never on a sleep.
/// </summary>
[TestClass]
public sealed class HostileKillTests
{
    private const int Kills = 54;
    private const int AtOnce = 6;

    public TestContext TestContext { get; set; } = null!;

    private sealed record Plan(int Index, string Kind, string[] Args, bool AfterReady, int DelayMs);

    [TestMethod]
    public async Task Clients_killed_at_random_points_leave_the_node_serving_its_pool_at_baseline_and_nothing_in_shared_memory()
    {
        var random = Seeds.Create(TestContext);
        var clock = Stopwatch.StartNew();
        string socket = Path.Combine(Path.GetTempPath(), $"ft-{Guid.NewGuid():N}"[..20] + ".sock");
        using var node = ChildProcess.Start("tube-node", socket);
        Assert.AreEqual("ready", await node.ReadLineAsync());
        await using var healthy = await TubeClient.ConnectAsync(Options(socket, "healthy"));
        var empty = await StatsAsync(node, open: 1);

        var shared = random.Bytes((6 << 20) + 5); // three window halves of a child's 4 MiB window
        var sharedId = await healthy.PutAsync(shared, new PutOptions { Consumers = int.MaxValue });
        string sharedSum = DataChecksum.Compute(shared).ToString(CultureInfo.InvariantCulture);
        var baseline = await StatsAsync(node, open: 1);

        (string Kind, string[] Args)[] kinds =
        [
            ("put", ["tube-put-forever", socket, "kill", "8"]),
            ("publish", ["tube-publish-forever", socket, "kill", (3 << 20).ToString(CultureInfo.InvariantCulture)]),
            ("gethost", ["tube-gethost-forever", socket, "kill", sharedId.ToString(), sharedSum]),
            ("get", ["tube-get-forever", socket, "kill", sharedId.ToString(), sharedSum]),
            ("allocate-hold", ["tube-allocate-hold", socket, "kill", (4 << 20).ToString(CultureInfo.InvariantCulture)]),
        ];

        // The plan, all from the seed: half the kills land a random moment after the child's first
        // round (inside an operation), half a random moment after its start (start-up, handshake, or an operation).
        var plans = Enumerable.Range(0, Kills).Select(i =>
        {
            var (kind, args) = kinds[i % kinds.Length];
            bool afterReady = random.Next(2) == 0;
            return new Plan(i, kind, args, afterReady, random.Next(0, afterReady ? 400 : 2500));
        }).ToArray();

        var pids = new ConcurrentBag<int>();
        var leftovers = new ConcurrentBag<TubeId>();
        var problems = new ConcurrentQueue<string>();
        var outcomes = new ConcurrentDictionary<string, int>();
        using var gate = new SemaphoreSlim(AtOnce);
        using var stormOver = new CancellationTokenSource();
        var healthyLoop = HealthyLoopAsync(healthy, new Random(random.Next()), problems, stormOver.Token);

        await Task.WhenAll(plans.Select(async plan =>
        {
            await gate.WaitAsync();
            try
            {
                using var child = ChildProcess.Start(plan.Args);
                pids.Add(child.Id);
                if (plan.AfterReady)
                {
                    string line;
                    while ((line = await child.ReadLineAsync()).StartsWith("id ", StringComparison.Ordinal))
                    {
                        leftovers.Add(TubeId.Parse(line[3..]));
                    }

                    if (line != "ready")
                    {
                        problems.Enqueue($"{plan.Kind} #{plan.Index}: '{line}' instead of ready");
                    }
                }

                await Task.Delay(plan.DelayMs); // the random point of the kill, not a synchronisation
                bool alive = !child.HasExited;
                await child.KillAsync();
                var (exit, output) = await child.WaitAsync();
                foreach (var line in output.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                {
                    if (line.StartsWith("id ", StringComparison.Ordinal))
                    {
                        leftovers.Add(TubeId.Parse(line[3..]));
                    }
                    else if (line.Contains("mismatch", StringComparison.Ordinal) || line.Contains("Exception", StringComparison.Ordinal))
                    {
                        problems.Enqueue($"{plan.Kind} #{plan.Index}: {line}");
                    }
                }

                string outcome = alive ? $"{plan.Kind} killed {(plan.AfterReady ? "mid-operation" : "after start")}" : $"{plan.Kind} exited {exit} before the kill";
                outcomes.AddOrUpdate(outcome, 1, (_, v) => v + 1);
                if (!alive)
                {
                    problems.Enqueue($"{plan.Kind} #{plan.Index} exited ({exit}) before its kill: {output}");
                }
            }
            finally
            {
                gate.Release();
            }
        }));
        var stormTime = clock.Elapsed;
        await stormOver.CancelAsync();
        int rounds = await healthyLoop;

        Assert.IsFalse(node.HasExited, "the node survived every kill");
        foreach (var id in leftovers)
        {
            try
            {
                await healthy.DeleteAsync(id); // committed by a child that was killed before its Delete: data outlives its producer by contract
            }
            catch (TubeException e) when (e.Error == TubeError.NotFound)
            {
                // Deleted by the child itself.
            }
        }

        var after = await StatsAsync(node, open: 1);
        var pidSet = pids.ToHashSet();
        var orphans = Directory.Exists("/dev/shm")
            ? Directory.GetFiles("/dev/shm", "faastube*").Where(f => Path.GetFileName(f).Split('.') is [_, var pid, ..] && int.TryParse(pid, out int p) && pidSet.Contains(p)).ToList()
            : [];

        // Still serving: a checksummed round trip after the storm.
        var data = random.Bytes((5 << 20) + 3);
        var id2 = await healthy.PutAsync(data, new PutOptions { Consumers = 1 });
        var back = new byte[data.Length];
        await healthy.GetAsync(id2, back.AsMemory());
        await healthy.DeleteAsync(sharedId);
        var end = await StatsAsync(node, open: 1);

        TestContext.WriteLine($"{Kills} client processes ({AtOnce} at once) in {stormTime.TotalSeconds:0.0} s; healthy round trips during the storm: {rounds}; whole test {clock.Elapsed.TotalSeconds:0.0} s");
        TestContext.WriteLine("outcomes: " + string.Join(", ", outcomes.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}")));
        TestContext.WriteLine($"pool in use: empty {empty.InUse}, baseline {baseline.InUse}, after the storm {after.InUse} ({after.Blocks} blocks, {after.Reserved} reserved), at the end {end.InUse}; leftover committed ids deleted: {leftovers.Count}");

        Assert.IsEmpty(problems, string.Join("\n", problems.Take(20)));
        Assert.IsGreaterThanOrEqualTo(50, outcomes.Where(p => p.Key.Contains(" killed ", StringComparison.Ordinal)).Sum(p => p.Value), "at least 50 clients were alive when killed");
        Assert.AreEqual(baseline.InUse, after.InUse, "every killed client's blocks, leases and unfinished Puts are given back");
        Assert.AreEqual(baseline.Blocks, after.Blocks, "no block outlives its killed client");
        Assert.IsEmpty(orphans, "killed clients leave nothing in /dev/shm: " + string.Join(", ", orphans));
        Assert.AreEqual(DataChecksum.Compute(data), DataChecksum.Compute(back), "the node serves a healthy client after the storm");
        Assert.AreEqual(empty.InUse, end.InUse, "with the shared data deleted the pool is empty again");
        Assert.IsFalse(node.HasExited);
    }

    /// <summary>Checksummed Put/Get round trips while the storm lasts (at least 3).</summary>
    private static async Task<int> HealthyLoopAsync(TubeClient client, Random random, ConcurrentQueue<string> problems, CancellationToken stormOver)
    {
        int rounds = 0;
        try
        {
            while (!stormOver.IsCancellationRequested || rounds < 3)
            {
                rounds++;
                var data = random.Bytes(random.Next(1, 3 << 20));
                var id = await client.PutAsync(data, new PutOptions { Consumers = 1 });
                var back = new byte[data.Length];
                await client.GetAsync(id, back.AsMemory());
                if (DataChecksum.Compute(back) != DataChecksum.Compute(data))
                {
                    problems.Enqueue($"healthy round {rounds}: checksum mismatch");
                }
            }
        }
        catch (Exception e)
        {
            problems.Enqueue($"healthy round {rounds} failed: {e.GetType().Name}: {e.Message}");
        }

        return rounds;
    }

    /// <summary>The node's pool once at most <paramref name="open"/> sessions are not yet cleaned up.</summary>
    private static async Task<(long InUse, long Reserved, int Blocks, int Sessions)> StatsAsync(ChildProcess node, int open)
    {
        await node.SendLineAsync($"stats {open}");
        string line = await node.ReadLineAsync();
        var parts = line.Split(' ');
        Assert.AreEqual("stats", parts[0], line);
        return (long.Parse(parts[1], CultureInfo.InvariantCulture), long.Parse(parts[2], CultureInfo.InvariantCulture), int.Parse(parts[3], CultureInfo.InvariantCulture), int.Parse(parts[4], CultureInfo.InvariantCulture));
    }

    private static TubeClientOptions Options(string socket, string function) => new()
    {
        SocketPath = socket,
        Workflow = "kill",
        Function = function,
        WindowBytes = 4 << 20,
        CallTimeout = TimeSpan.FromSeconds(30),
        Gpus = new GpuSystemOptions { Backend = GpuBackend.Simulated },
    };
}
