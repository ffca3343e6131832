using System.Globalization;
using System.Text;
using FaaSTube.Topology;
using FaaSTube.Transfers;
using FaaSTube.Transfers.Routing;

namespace FaaSTube.Bench.Routing;

/// <summary>
/// Per GPU pair of each preset: the bandwidth of the direct link alone (or the PCIe fallback where
/// there is none) against what the router reserves on an idle machine, as Markdown tables and an
/// SVG chart of the pair matrices. A flow model: the router's reservations on the link model.
/// <code>dotnet run -c Release --project bench/FaaSTube.Bench -- routing-matrix [output-folder]</code>
/// </summary>
internal static class BandwidthMatrixScenario
{
    public static async Task<int> RunAsync(string[] args)
    {
        string output = args.Length > 0 ? args[0] : Path.Combine("bench", "results");
        Directory.CreateDirectory(output);
        var md = new StringBuilder();
        var svg = new StringBuilder("<svg xmlns='http://www.w3.org/2000/svg' width='1000' height='420' font-family='sans-serif' font-size='10'><rect width='1000' height='420' fill='white'/>");
        int panel = 0;
        foreach (var topology in new[] { GpuTopology.Dgx1V100, GpuTopology.DgxA100 })
        {
            int n = topology.GpuCount;
            var direct = new double[n, n];
            var routed = new double[n, n];
            for (int a = 0; a < n; a++)
            {
                for (int b = 0; b < n; b++)
                {
                    if (a == b)
                    {
                        continue;
                    }

                    var link = topology.Peer(a, b);
                    direct[a, b] = link.Kind == PeerLinkKind.None ? topology.HostBytesPerSecond : link.BytesPerSecond;
                    using var flow = new PathRouter(topology).Route(a, b);
                    routed[a, b] = flow.BytesPerSecond;
                }
            }

            md.AppendLine(CultureInfo.InvariantCulture, $"### {topology.Name}: GB/s per pair, direct link alone (PCIe fallback where none) / routed").AppendLine();
            md.AppendLine("| from \\ to | " + string.Join(" | ", Enumerable.Range(0, n)) + " |");
            md.AppendLine("| --- |" + string.Concat(Enumerable.Repeat(" --- |", n)));
            for (int a = 0; a < n; a++)
            {
                md.Append(CultureInfo.InvariantCulture, $"| {a} |");
                for (int b = 0; b < n; b++)
                {
                    md.Append(a == b ? " - |" : string.Create(CultureInfo.InvariantCulture, $" {direct[a, b] / 1e9:0} / {routed[a, b] / 1e9:0} |"));
                }

                md.AppendLine();
            }

            double gainMean = Pairs(n).Average(p => routed[p.A, p.B] / direct[p.A, p.B]);
            md.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"Mean gain over the direct link alone: {gainMean:F2}x").AppendLine();
            Heatmap(svg, topology.Name, direct, routed, 20 + panel * 490);
            panel++;
        }

        md.AppendLine(await ExecutedAsync());
        svg.Append("</svg>");
        File.WriteAllText(Path.Combine(output, "routing-matrix.md"), md.ToString());
        File.WriteAllText(Path.Combine(output, "routing-matrix.svg"), svg.ToString());
        Console.Write(md);
        Console.WriteLine($"wrote {Path.Combine(output, "routing-matrix.md")} and routing-matrix.svg");
        return 0;
    }

    /// <summary>1 GiB copies executed on the simulated machines under the link model and a virtual clock.</summary>
    private static async Task<string> ExecutedAsync()
    {
        const long Bytes = 1L << 30;
        var md = new StringBuilder("### Executed 1 GiB copies (simulated GPUs, link model, virtual clock)\n\n| machine | copy | baseline | GB/s | routed GB/s | gain |\n| --- | --- | --- | ---: | ---: | ---: |\n");
        foreach (var topology in new[] { GpuTopology.Dgx1V100, GpuTopology.DgxA100 })
        {
            var clock = new FaaSTube.Devices.Simulated.VirtualClock();
            using var gpus = FaaSTube.Devices.GpuSystem.Open(new FaaSTube.Devices.GpuSystemOptions
            {
                Backend = FaaSTube.Devices.GpuBackend.Simulated, SimulatedTopology = topology, SimulatedClock = clock, SimulatedMemoryBytes = 3L << 30,
            });
            using var copier = new MultiPathCopier(gpus);
            async Task<double> Timed(Func<Task> copy)
            {
                var start = clock.Now;
                await copy();
                return Bytes / (clock.Now - start).TotalSeconds / 1e9;
            }

            foreach (var (a, b) in topology.Name.StartsWith("dgx1", StringComparison.Ordinal) ? new[] { (0, 5), (0, 1) } : [(0, 1)])
            {
                using var src = gpus.Devices[a].Allocate(Bytes);
                using var dst = gpus.Devices[b].Allocate(Bytes);
                using var stream = gpus.Devices[a].CreateStream();
                double routed = await Timed(() => copier.CopyAsync(src, dst));
                string baselineName;
                double baseline;
                if (topology.Peer(a, b).Kind == PeerLinkKind.None)
                {
                    using var hold = copier.Router.Route(a, b);
                    baselineName = "PCIe fallback";
                    baseline = await Timed(() => copier.CopyAsync(src, dst));
                }
                else
                {
                    baselineName = "direct link alone";
                    baseline = await Timed(async () => await stream.CopyAsync(src, dst));
                }

                md.AppendLine(CultureInfo.InvariantCulture, $"| {topology.Name} | GPU {a} -> {b} | {baselineName} | {baseline:F1} | {routed:F1} | {routed / baseline:F2}x |");
            }

            if (topology.Name.StartsWith("dgx1", StringComparison.Ordinal))
            {
                using var pinned = gpus.Devices[0].AllocatePinned(Bytes - 1);
                using var dst = gpus.Devices[0].Allocate(Bytes - 1);
                using var stream = gpus.Devices[0].CreateStream();
                double single = await Timed(async () => await stream.CopyAsync(pinned.Memory, dst));
                double harvested = await Timed(() => copier.FromHostAsync(pinned.Memory, dst));
                md.AppendLine(CultureInfo.InvariantCulture, $"| {topology.Name} | host -> GPU 0 | its own PCIe lane | {single:F1} | {harvested:F1} | {harvested / single:F2}x |");
            }
        }

        return md.ToString();
    }

    private static IEnumerable<(int A, int B)> Pairs(int n) =>
        Enumerable.Range(0, n).SelectMany(a => Enumerable.Range(0, n).Where(b => b != a).Select(b => (a, b)));

    /// <summary>Two matrices side by side (direct, routed), cell colour by bandwidth, value in the cell.</summary>
    private static void Heatmap(StringBuilder svg, string name, double[,] direct, double[,] routed, int left)
    {
        int n = direct.GetLength(0);
        const int Cell = 26;
        double max = Pairs(n).Max(p => Math.Max(direct[p.A, p.B], routed[p.A, p.B]));
        svg.Append(CultureInfo.InvariantCulture, $"<text x='{left}' y='16' font-size='13'>{name}: direct link alone (left) vs routed (right), GB/s</text>");
        for (int m = 0; m < 2; m++)
        {
            var values = m == 0 ? direct : routed;
            int x0 = left + m * (n * Cell + 20);
            for (int a = 0; a < n; a++)
            {
                for (int b = 0; b < n; b++)
                {
                    double v = a == b ? 0 : values[a, b];
                    int shade = (int)(255 - 200 * v / max);
                    svg.Append(CultureInfo.InvariantCulture, $"<rect x='{x0 + b * Cell}' y='{30 + a * Cell}' width='{Cell - 1}' height='{Cell - 1}' fill='rgb({shade},{shade},255)'/>");
                    if (a != b)
                    {
                        svg.Append(CultureInfo.InvariantCulture, $"<text x='{x0 + b * Cell + 3}' y='{30 + a * Cell + 16}'>{v / 1e9:0}</text>");
                    }
                }
            }
        }
    }
}
