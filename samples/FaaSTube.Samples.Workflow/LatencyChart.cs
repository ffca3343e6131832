using ScottPlot;

namespace FaaSTube.Samples.Workflow;

/// <summary>The per-request end-to-end latency of each mode as one line chart (ScottPlot): SVG for a .svg path, PNG otherwise.</summary>
internal static class LatencyChart
{
    public static void Save(Dictionary<Mode, List<RequestResult>> runs, string path, string subtitle)
    {
        var plot = new Plot();
        foreach (var mode in Modes.All)
        {
            double[] xs = Enumerable.Range(0, runs[mode].Count).Select(i => (double)i).ToArray();
            double[] ys = runs[mode].Select(r => r.TotalMs).ToArray();
            var line = plot.Add.Scatter(xs, ys);
            line.LegendText = $"{mode.Title()} (p50 {Report.Percentile(ys, 0.5):F0} ms)";
            line.MarkerSize = 4;
        }

        plot.Title($"Traffic workflow, end-to-end latency per request\n{subtitle}");
        plot.XLabel("request");
        plot.YLabel("end-to-end latency (ms)");
        plot.Axes.SetLimitsY(0, runs.Values.Max(r => r.Max(x => x.TotalMs)) * 1.1);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.ShowLegend(Edge.Bottom); // below the axes: it never hides a line
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        Directory.CreateDirectory(dir!);
        if (path.EndsWith(".svg", StringComparison.OrdinalIgnoreCase))
        {
            plot.SaveSvg(path, 1000, 560);
        }
        else
        {
            plot.SavePng(path, 1000, 560);
        }
    }
}
