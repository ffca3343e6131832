using System.Globalization;
using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Transfers;

namespace FaaSTube.Bench.Transfers;

/// <summary>
/// Performance isolation on one lane: a bulk transfer and, while it runs, a closed loop of small
/// transfers with a deadline from another tenant. Run twice in one go: with FaaSTube's SLO-aware
/// policy, and first-come-first-served (the same transfers, one tenant, no SLOs, so chunks go in
/// arrival order); plus the bulk transfer alone for the link's ceiling.
/// <code>dotnet run -c Release --project bench/FaaSTube.Bench -- transfer-isolation [--model] [--bulk-mib 1024] [--small-mib 8] [--slo-ms 2]</code>
/// --model: the simulated GPU's link model under a virtual clock (exact on any machine); otherwise
/// real time on the active backend.
/// </summary>
internal static class IsolationScenario
{
    public static async Task<int> RunAsync(string[] args)
    {
        bool model = args.Contains("--model");
        long bulkBytes = Option(args, "--bulk-mib", 1024) << 20;
        int smallBytes = (int)(Option(args, "--small-mib", 8) << 20);
        var slo = TimeSpan.FromMilliseconds(Option(args, "--slo-ms", 2));

        var solo = await RunOnceAsync(model, bulkBytes, smallBytes, slo, fair: true, withSmall: false);
        var fair = await RunOnceAsync(model, bulkBytes, smallBytes, slo, fair: true, withSmall: true);
        var fcfs = await RunOnceAsync(model, bulkBytes, smallBytes, slo, fair: false, withSmall: true);

        Console.WriteLine($"transfer-isolation: {bulkBytes >> 20} MiB bulk + closed loop of {smallBytes >> 20} MiB transfers with a {slo.TotalMilliseconds} ms SLO ({solo.Backend}{(model ? ", link model, virtual clock" : ", real time")})");
        Console.WriteLine();
        Console.WriteLine("| policy | small transfers | deadlines met | small p50 | small p99 | bulk time | total GB/s | vs solo ceiling |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        Console.WriteLine($"| bulk alone (ceiling) | - | - | - | - | {Ms(solo.Bulk)} | {solo.GBps:F1} | 100% |");
        foreach (var (name, r) in new[] { ("FaaSTube (SLO-aware)", fair), ("first come first served", fcfs) })
        {
            Console.WriteLine($"| {name} | {r.Smalls.Count} | {r.Met:P1} | {Ms(r.P(0.5))} | {Ms(r.P(0.99))} | {Ms(r.Bulk)} | {r.GBps:F1} | {r.GBps / solo.GBps:P0} |");
        }

        return 0;
    }

    private sealed record Outcome(string Backend, TimeSpan Bulk, List<TimeSpan> Smalls, double Met, double GBps)
    {
        public TimeSpan P(double q)
        {
            if (Smalls.Count == 0)
            {
                return TimeSpan.Zero;
            }

            var sorted = Smalls.OrderBy(s => s).ToList();
            return sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Count) - 1, 0, sorted.Count - 1)];
        }
    }

    private static async Task<Outcome> RunOnceAsync(bool model, long bulkBytes, int smallBytes, TimeSpan slo, bool fair, bool withSmall)
    {
        var clock = model ? new VirtualClock() : null;
        using var gpus = GpuSystem.Open(model
            ? new GpuSystemOptions { Backend = GpuBackend.Simulated, SimulatedClock = clock, SimulatedMemoryBytes = bulkBytes + (64L << 20) }
            : new GpuSystemOptions());
        var time = (TimeProvider?)clock ?? TimeProvider.System;
        await using var engine = new TransferEngine(gpus.Devices[0], new TransferEngineOptions(), router: null, FaaSTube.Hosting.FaaSTubeServices.From(null, null, time));
        using var bulkBuffer = gpus.Devices[0].Allocate(bulkBytes);
        using var smallBuffer = gpus.Devices[0].Allocate(smallBytes);
        var bulk = new byte[bulkBytes];
        var small = new byte[smallBytes];
        Random.Shared.NextBytes(small);

        long start = time.GetTimestamp();
        var bulkTask = engine.ToDeviceAsync(bulk, bulkBuffer, new TransferRequest { Tenant = fair ? "bulk" : "all" }).AsTask();
        var smalls = new List<TimeSpan>();
        int met = 0;
        long smallMoved = 0;
        while (withSmall && !bulkTask.IsCompleted)
        {
            var result = await engine.ToDeviceAsync(small, smallBuffer, new TransferRequest { Tenant = fair ? "urgent" : "all", Slo = fair ? slo : null });
            smalls.Add(result.Elapsed);
            met += result.Elapsed <= slo ? 1 : 0;
            smallMoved += smallBytes;
        }

        await bulkTask;
        var total = time.GetElapsedTime(start);
        return new Outcome(gpus.Backend.ToString(), total, smalls, smalls.Count == 0 ? 1 : (double)met / smalls.Count, (bulkBytes + smallMoved) / total.TotalSeconds / 1e9);
    }

    private static long Option(string[] args, string name, long fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? long.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    }

    private static string Ms(TimeSpan t) => $"{t.TotalMilliseconds:F2} ms";
}
