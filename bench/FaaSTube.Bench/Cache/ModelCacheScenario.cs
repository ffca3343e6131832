using System.Diagnostics;
using System.Globalization;
using System.Text;
using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Memory;
using FaaSTube.Topology;
using ScottPlot;

namespace FaaSTube.Bench.Cache;

/// <summary>
/// The model-cache scenario (issue 13): functions with 12 models of 100 MiB-4 GiB (the table below,
/// sizes of common inference models), invoked by a Zipf trace with bursts, through a real node on a
/// simulated DGX-1 and a simulated H100, GPU memory tight, three policies in the same run:
/// <list type="bullet">
/// <item>no cache: every invocation Puts its model, reads it, frees it;</item>
/// <item>LRU by name: named, pinned models per GPU, the least recently used deleted when the GPU's budget is full (the harness keeps the LRU list), functions placed round robin;</item>
/// <item>value: <c>GetOrLoadAsync</c> of cacheable named objects (the pool's value-based eviction, replicas over the peer path), each invocation placed on a GPU that <c>WhereNamedAsync</c> reports (locality), else round robin.</item>
/// </list>
/// Sizes are divided by <c>--scale</c> (default 64: 4 GiB becomes 64 MiB) so that a run fits a small
/// machine; the budget per GPU is <c>--budget</c> of the models' total (default 0.35): the pool's
/// <c>MaxBytes</c>; the workflow's quota (<c>MaxPartitionBytes</c>, which counts evicted copies too) is four
/// budgets, since the cache does not yet drop evicted objects when the quota is reached. Reported per
/// policy and machine: hit rate, load time, p50/p99 latency, bytes over PCIe (host to GPU) and over
/// NVLink (peer copies), counted by the harness from each call's path. The simulated GPU copies at
/// memory speed, so times compare the policies' work, not a PCIe link's.
/// <c>dotnet run -c Release --project bench/FaaSTube.Bench -- model-cache [--scale 64] [--invocations 300] [--budget 0.35] [--seed 13] [--out bench/results]</c>
/// </summary>
internal static class ModelCacheScenario
{
    /// <summary>Name and size in MiB (fp16 weights of common inference models).</summary>
    private static readonly (string Name, long MiB)[] Models =
    [
        ("resnet-50", 100), ("bert-base", 420), ("vit-base", 330), ("whisper-small", 470),
        ("clip-vit-l", 890), ("t5-base", 850), ("bert-large", 1300), ("whisper-medium", 1500),
        ("sd-unet", 1700), ("gpt2-xl", 3000), ("whisper-large", 2900), ("llama-1b", 2400),
    ];

    private static readonly string[] Policies = ["no cache", "LRU by name", "value + replicas + locality"];

    private sealed record Stats(string Machine, string Policy, int Hits, int Invocations, double LoadSeconds, double P50Ms, double P99Ms, long PcieBytes, long NvlinkBytes);

    public static async Task<int> RunAsync(string[] args)
    {
        int scale = Arg(args, "--scale", 64);
        int invocations = Arg(args, "--invocations", 300);
        double budgetShare = Arg(args, "--budget", 0.35);
        int seed = Arg(args, "--seed", 13);
        string outDir = ArgText(args, "--out", Path.Combine("bench", "results"));
        var random = new Random(seed);
        var bytes = Models.Select(m => RandomBytes(random, m.MiB * (1L << 20) / scale)).ToArray();
        var trace = Trace(new Random(seed + 1), invocations, Models.Length);
        long total = bytes.Sum(b => (long)b.Length);
        long budget = (long)(total * budgetShare);
        Console.WriteLine($"model-cache: {Models.Length} models, {total >> 20} MiB in all after /{scale}; budget {budget >> 20} MiB per GPU; {invocations} invocations; seed {seed}");

        var results = new List<Stats>();
        foreach (var (machine, topology) in new[] { ("DGX-1 (8 V100, simulated)", GpuTopology.Dgx1V100), ("H100 (simulated)", GpuTopology.SingleH100) })
        {
            foreach (var policy in Policies)
            {
                var stats = await RunPolicyAsync(machine, topology, policy, bytes, trace, budget);
                results.Add(stats);
                Console.WriteLine($"{machine,-28} {policy,-28} hit {100.0 * stats.Hits / stats.Invocations,5:F1} %  load {stats.LoadSeconds,7:F2} s  p50 {stats.P50Ms,8:F2} ms  p99 {stats.P99Ms,8:F2} ms  PCIe {stats.PcieBytes >> 20,7} MiB  NVLink {stats.NvlinkBytes >> 20,6} MiB");
            }
        }

        Directory.CreateDirectory(outDir);
        string stamp = DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
        string chart = Path.Combine(outDir, $"{stamp}-model-cache-simulated.svg");
        SaveChart(results, chart);
        string report = Path.Combine(outDir, $"{stamp}-model-cache-simulated.md");
        await File.WriteAllTextAsync(report, Markdown(results, args, scale, invocations, budget, seed, total, Path.GetFileName(chart)));
        Console.WriteLine($"wrote {report} and {chart}");
        return 0;
    }

    private static async Task<Stats> RunPolicyAsync(string machine, GpuTopology topology, string policy, byte[][] models, int[] trace, long budget)
    {
        var options = new TubeNodeOptions
        {
            SocketPath = Path.Combine(Path.GetTempPath(), $"ft-mc-{Guid.NewGuid():N}"[..22] + ".sock"),
            Gpus = new GpuSystemOptions { Backend = GpuBackend.Simulated, SimulatedTopology = topology },
            Pool = new GpuPoolOptions { SlabBytes = 16 << 20, FloorBytes = 0, TrimInterval = null, MaxBytes = budget, MaxPartitionBytes = 4 * budget, AllocationTimeout = TimeSpan.FromMilliseconds(300) },
            SweepInterval = null,
        };
        await using var node = await TubeNode.StartAsync(options);
        await using var client = await TubeClient.ConnectInProcessAsync(node, new TubeClientOptions { Workflow = "inference", Function = "f", WindowBytes = 8 << 20 });
        int gpus = node.Gpus.Devices.Count;
        var lru = Enumerable.Range(0, gpus).Select(_ => new LinkedList<int>()).ToArray();
        var latencies = new List<double>();
        int hits = 0;
        long pcie = 0, nvlink = 0;
        double loadSeconds = 0;
        int next = 0;
        foreach (int model in trace)
        {
            var data = models[model];
            string name = Models[model].Name;
            var clock = Stopwatch.StartNew();
            switch (policy)
            {
                case "no cache":
                {
                    int gpu = next++ % gpus;
                    var id = await client.PutAsync(data, new PutOptions { Device = gpu });
                    loadSeconds += clock.Elapsed.TotalSeconds;
                    pcie += data.Length;
                    await using (await client.GetAsync(id, gpu))
                    {
                    }

                    break;
                }

                case "LRU by name":
                {
                    int gpu = next++ % gpus;
                    var list = lru[gpu];
                    var named = new NamedOptions { Device = gpu, Cacheable = false };
                    string local = $"{name}@{gpu}";
                    if (list.Contains(model))
                    {
                        hits++;
                        list.Remove(model);
                    }
                    else
                    {
                        var loading = Stopwatch.StartNew();
                        while (list.Sum(m => (long)models[m].Length) + data.Length > budget * 3 / 4 && list.Last is { } victim) // room for slab rounding
                        {
                            await client.DeleteNamedAsync($"{Models[victim.Value].Name}@{gpu}");
                            list.RemoveLast();
                        }

                        while (true)
                        {
                            try
                            {
                                await client.PutNamedAsync(local, data, named);
                                break;
                            }
                            catch (TubeException e) when (e.Error == TubeError.OutOfMemory && list.Last is { } victim)
                            {
                                await client.DeleteNamedAsync($"{Models[victim.Value].Name}@{gpu}"); // slab rounding: one more goes
                                list.RemoveLast();
                            }
                        }
                        loadSeconds += loading.Elapsed.TotalSeconds;
                        pcie += data.Length;
                    }

                    list.AddFirst(model);
                    await using (await client.GetNamedAsync(local, named))
                    {
                    }

                    await client.FlushAsync();
                    break;
                }

                default:
                {
                    var where = await TryWhereAsync(client, name);
                    int gpu = where.Count > 0 ? where[next++ % where.Count] : next++ % gpus;
                    bool loaded = false;
                    var loader = NamedLoader.FromBytes(_ =>
                    {
                        loaded = true;
                        return ValueTask.FromResult<ReadOnlyMemory<byte>>(data);
                    });
                    await using (var got = await client.GetOrLoadAsync(name, loader, new NamedOptions { Device = gpu }))
                    {
                        if (loaded)
                        {
                            loadSeconds += clock.Elapsed.TotalSeconds;
                            pcie += data.Length;
                        }
                        else if (got.Path == TubePath.PeerCopy)
                        {
                            nvlink += data.Length;
                        }
                        else if (got.Path == TubePath.Restored)
                        {
                            pcie += data.Length;
                            hits++;
                        }
                        else
                        {
                            hits++;
                        }
                    }

                    break;
                }
            }

            latencies.Add(clock.Elapsed.TotalMilliseconds);
        }

        latencies.Sort();
        return new Stats(machine, policy, hits, trace.Length, loadSeconds, Percentile(latencies, 0.5), Percentile(latencies, 0.99), pcie, nvlink);
    }

    private static async Task<IReadOnlyList<int>> TryWhereAsync(TubeClient client, string name)
    {
        try
        {
            return await client.WhereNamedAsync(name);
        }
        catch (TubeException e) when (e.Error == TubeError.NotFound)
        {
            return [];
        }
    }

    /// <summary>Zipf (s = 1) over the models, with a burst of 12 invocations of one model every 60.</summary>
    private static int[] Trace(Random random, int count, int models)
    {
        double[] weights = Enumerable.Range(1, models).Select(k => 1.0 / k).ToArray();
        double sum = weights.Sum();
        var order = Enumerable.Range(0, models).OrderBy(_ => random.Next()).ToArray(); // which model is popular is random
        var trace = new int[count];
        for (int i = 0; i < count; i++)
        {
            if (i % 60 >= 48)
            {
                trace[i] = i % 60 == 48 ? random.Next(models) : trace[i - 1]; // a burst of one model, often a cold one
                continue;
            }

            double u = random.NextDouble() * sum;
            int k = 0;
            while (u > weights[k] && k < models - 1)
            {
                u -= weights[k++];
            }

            trace[i] = order[k];
        }

        return trace;
    }

    private static double Percentile(List<double> sorted, double p) => sorted.Count == 0 ? 0 : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];

    private static byte[] RandomBytes(Random random, long length)
    {
        var data = new byte[length];
        random.NextBytes(data);
        return data;
    }

    private static void SaveChart(List<Stats> results, string path)
    {
        var plot = new Plot();
        var bars = new List<Bar>();
        var ticks = new List<Tick>();
        int position = 0;
        foreach (var machine in results.Select(r => r.Machine).Distinct())
        {
            foreach (var r in results.Where(r => r.Machine == machine))
            {
                bars.Add(new Bar { Position = position, Value = 100.0 * r.Hits / r.Invocations, FillColor = Colors.SteelBlue });
                bars.Add(new Bar { Position = position + 0.4, Value = r.P99Ms, FillColor = Colors.OrangeRed });
                ticks.Add(new Tick(position + 0.2, $"{machine.Split(' ')[0]}\n{r.Policy}"));
                position += 2;
            }
        }

        plot.Add.Bars(bars);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.ToArray());
        plot.Title("Model cache: hit rate (%, blue) and p99 invocation latency (ms, red) per policy");
        plot.Axes.Margins(bottom: 0);
        plot.SaveSvg(path, 1200, 560);
    }

    private static string Markdown(List<Stats> results, string[] args, int scale, int invocations, long budget, int seed, long total, string chart)
    {
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"# Model cache on simulated GPUs ({DateTime.UtcNow:yyyy-MM-dd})");
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"Command: `FAASTUBE_BACKEND=simulated dotnet run -c Release --project bench/FaaSTube.Bench -- model-cache {string.Join(' ', args)}`");
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"Device: simulated GPUs (shared memory, copies at memory speed) on {Environment.ProcessorCount} cores; {Models.Length} models, sizes / {scale} ({total >> 20} MiB in all), a GPU budget of {budget >> 20} MiB, {invocations} invocations (Zipf s = 1, a 12-invocation burst of one model every 60), seed {seed}. Latency: the invocation's Get (and load) only, sequential. A hit is a Get served without a load: zero copy, or (value policy) restored from the host copy, whose bytes count as PCIe; a peer copy from another GPU counts as NVLink and not as a hit.");
        md.AppendLine();
        md.AppendLine("| machine | policy | hit rate | load time (s) | p50 (ms) | p99 (ms) | PCIe (MiB) | NVLink (MiB) |");
        md.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var r in results)
        {
            md.AppendLine(CultureInfo.InvariantCulture, $"| {r.Machine} | {r.Policy} | {100.0 * r.Hits / r.Invocations:F1} % | {r.LoadSeconds:F2} | {r.P50Ms:F2} | {r.P99Ms:F2} | {r.PcieBytes >> 20} | {r.NvlinkBytes >> 20} |");
        }

        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"Chart: `{chart}`. Source: `bench/FaaSTube.Bench/Cache/ModelCacheScenario.cs`.");
        return md.ToString();
    }

    private static T Arg<T>(string[] args, string name, T fallback)
        where T : IParsable<T>
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? T.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    }

    private static string ArgText(string[] args, string name, string fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
    }
}
