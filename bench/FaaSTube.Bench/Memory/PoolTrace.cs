using System.Globalization;
using System.Text;
using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Memory;

namespace FaaSTube.Bench.Memory;

/// <summary>
/// The pool's footprint under a bursty, Azure-Functions-like trace, on the simulated GPU under a
/// virtual clock (exact and repeatable): three functions alternate between bursts of Poisson
/// arrivals and idle periods; each request holds a tensor for its execution time. The same trace
/// runs through the elastic pool (trimmed every simulated second) and a grow-only pool (a static
/// pool: what it takes, it keeps). Writes the series as CSV and an SVG chart and prints a summary.
/// <code>dotnet run -c Release --project bench/FaaSTube.Bench -- pool-trace [output-folder] [seed]</code>
/// </summary>
internal static class PoolTrace
{
    private const long MiB = 1 << 20;
    private static readonly TimeSpan End = TimeSpan.FromSeconds(420);
    private static readonly TimeSpan LastArrival = TimeSpan.FromSeconds(300);

    private sealed record Function(string Name, long Bytes, TimeSpan Execution);

    private static readonly Function[] Functions =
    [
        new("preprocess", 24 * MiB, TimeSpan.FromMilliseconds(80)),
        new("detect", 48 * MiB, TimeSpan.FromMilliseconds(150)),
        new("classify", 6 * MiB, TimeSpan.FromMilliseconds(30)),
    ];

    public static async Task<int> RunAsync(string[] args)
    {
        string output = args.Length > 0 ? args[0] : Path.Combine("bench", "results");
        int seed = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 2026;
        var arrivals = Generate(new Random(seed));
        Console.WriteLine($"pool-trace: {arrivals.Count} requests over {LastArrival.TotalSeconds:0} s (seed {seed})");

        var elastic = await ReplayAsync(arrivals, trim: true);
        var grown = await ReplayAsync(arrivals, trim: false);

        Directory.CreateDirectory(output);
        var csv = new StringBuilder("seconds,live_bytes,elastic_reserved_bytes,static_reserved_bytes,elastic_evictions\n");
        for (int i = 0; i < elastic.Count; i++)
        {
            csv.Append(CultureInfo.InvariantCulture, $"{elastic[i].Seconds},{elastic[i].Live},{elastic[i].Reserved},{grown[i].Reserved},{elastic[i].Evictions}\n");
        }

        File.WriteAllText(Path.Combine(output, "pool-trace.csv"), csv.ToString());
        File.WriteAllText(Path.Combine(output, "pool-trace.svg"), Chart(elastic, grown));

        double Ratio(List<Sample> s) => s.Where(x => x.Live > 0).Average(x => (double)x.Reserved / x.Live);
        var last = elastic[^1];
        Console.WriteLine($"peak live {Mb(elastic.Max(s => s.Live))}, peak reserved {Mb(elastic.Max(s => s.Reserved))} (elastic) / {Mb(grown.Max(s => s.Reserved))} (static)");
        Console.WriteLine($"mean reserved/live while data is live: elastic {Ratio(elastic):F2}x, static {Ratio(grown):F2}x");
        Console.WriteLine($"mean reserved: elastic {Mb((long)elastic.Average(s => s.Reserved))}, static {Mb((long)grown.Average(s => s.Reserved))}");
        Console.WriteLine($"after the last burst and the idle window (t={last.Seconds} s): live {Mb(last.Live)}, reserved {Mb(last.Reserved)} elastic, {Mb(grown[^1].Reserved)} static");
        Console.WriteLine($"evictions: elastic {last.Evictions}, static {grown[^1].Evictions}");
        Console.WriteLine($"wrote {Path.Combine(output, "pool-trace.csv")} and pool-trace.svg");
        return 0;
    }

    private readonly record struct Arrival(TimeSpan Time, Function Function);

    private readonly record struct Sample(int Seconds, long Live, long Reserved, long Evictions);

    /// <summary>Per function: on periods of 10-30 s with Poisson arrivals at 3-12 per second, off periods of 20-60 s.</summary>
    private static List<Arrival> Generate(Random random)
    {
        var arrivals = new List<Arrival>();
        foreach (var f in Functions)
        {
            var t = TimeSpan.FromSeconds(random.NextDouble() * 20);
            while (t < LastArrival)
            {
                var burstEnd = t + TimeSpan.FromSeconds(10 + random.NextDouble() * 20);
                double rate = 3 + random.NextDouble() * 9;
                while (t < burstEnd && t < LastArrival)
                {
                    arrivals.Add(new Arrival(t, f));
                    t += TimeSpan.FromSeconds(-Math.Log(1 - random.NextDouble()) / rate);
                }

                t = burstEnd + TimeSpan.FromSeconds(20 + random.NextDouble() * 40);
            }
        }

        arrivals.Sort((a, b) => a.Time.CompareTo(b.Time));
        return arrivals;
    }

    private static async Task<List<Sample>> ReplayAsync(List<Arrival> arrivals, bool trim)
    {
        var clock = new VirtualClock();
        using var gpus = GpuSystem.Open(new GpuSystemOptions { Backend = GpuBackend.Simulated, SimulatedMemoryBytes = 4L << 30 });
        await using var pool = new GpuMemoryPool(gpus.Devices[0], new GpuPoolOptions
        {
            SlabBytes = 64 * MiB,
            MaxBytes = 1536 * MiB,
            FloorBytes = 0,
            TrimInterval = null,
            ProactiveRestore = false,
            MinIdleTime = TimeSpan.FromSeconds(10),
        }, FaaSTube.Hosting.FaaSTubeServices.From(null, null, clock));

        var releases = new PriorityQueue<PoolBlock, TimeSpan>();
        var samples = new List<Sample>();
        long live = 0;
        int next = 0;
        for (var second = TimeSpan.Zero; second <= End; second += TimeSpan.FromSeconds(1))
        {
            while (true)
            {
                // The next event before the end of this second: a release or an arrival, whichever is first.
                bool hasRelease = releases.TryPeek(out var due, out var at) && at <= second;
                bool hasArrival = next < arrivals.Count && arrivals[next].Time <= second;
                if (!hasRelease && !hasArrival)
                {
                    break;
                }

                if (hasRelease && (!hasArrival || at <= arrivals[next].Time))
                {
                    clock.AdvanceTo(at);
                    releases.Dequeue();
                    live -= due!.Length;
                    pool.Release(due, default);
                }
                else
                {
                    var a = arrivals[next++];
                    clock.AdvanceTo(a.Time);
                    var block = await pool.AllocateAsync(a.Function.Bytes, new BlockOptions { Function = a.Function.Name });
                    live += block.Length;
                    releases.Enqueue(block, a.Time + a.Function.Execution);
                }
            }

            clock.AdvanceTo(second);
            if (trim)
            {
                pool.Trim();
            }

            var stats = pool.GetStatistics();
            samples.Add(new Sample((int)second.TotalSeconds, live, stats.ReservedBytes, stats.Evictions));
        }

        return samples;
    }

    private static string Chart(List<Sample> elastic, List<Sample> grown)
    {
        const int W = 900, H = 360, Left = 60, Bottom = 40, Top = 30;
        double maxY = Math.Max(elastic.Max(s => s.Reserved), grown.Max(s => s.Reserved)) * 1.1;
        double maxX = elastic[^1].Seconds;
        string X(double v) => (Left + v / maxX * (W - Left - 20)).ToString("F1", CultureInfo.InvariantCulture);
        string Y(double v) => (H - Bottom - v / maxY * (H - Bottom - Top)).ToString("F1", CultureInfo.InvariantCulture);
        string Line(IEnumerable<(int S, long V)> points, string color, string label, int row) =>
            $"<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{string.Join(' ', points.Select(p => $"{X(p.S)},{Y(p.V)}"))}'/>" +
            $"<text x='{W - 250}' y='{Top + 16 * row}' fill='{color}' font-size='12'>{label}</text>";
        var svg = new StringBuilder($"<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' font-family='sans-serif'>");
        svg.Append($"<rect width='{W}' height='{H}' fill='white'/>");
        svg.Append($"<text x='{Left}' y='18' font-size='14'>FaaSTube pool footprint: bursty trace, simulated GPU, virtual clock</text>");
        for (int i = 0; i <= 4; i++)
        {
            double v = maxY * i / 4;
            svg.Append($"<line x1='{Left}' x2='{W - 20}' y1='{Y(v)}' y2='{Y(v)}' stroke='#ddd'/><text x='5' y='{Y(v)}' font-size='11'>{v / MiB:0} MiB</text>");
        }

        for (int s = 0; s <= maxX; s += 60)
        {
            svg.Append($"<text x='{X(s)}' y='{H - 15}' font-size='11'>{s} s</text>");
        }

        svg.Append(Line(grown.Select(s => (s.Seconds, s.Reserved)), "#d62728", "reserved, static (grow-only) pool", 1));
        svg.Append(Line(elastic.Select(s => (s.Seconds, s.Reserved)), "#1f77b4", "reserved, elastic pool", 2));
        svg.Append(Line(elastic.Select(s => (s.Seconds, s.Live)), "#2ca02c", "live intermediate data", 3));
        svg.Append("</svg>");
        return svg.ToString();
    }

    private static string Mb(long bytes) => $"{bytes / (double)MiB:0} MiB";
}
