namespace FaaSTube.Samples.Workflow;

/// <summary>Prints the per-request latencies along the critical path, and the summary of the modes side by side.</summary>
internal static class Report
{
    private const int MaxRowsPrinted = 20;

    public static void Print(Dictionary<Mode, List<RequestResult>> runs, TextWriter output)
    {
        int requests = runs[Mode.Tube].Count;
        output.WriteLine();
        output.WriteLine("modes:");
        foreach (var mode in Modes.All)
        {
            output.WriteLine($"  {mode.Title(),-14} {mode.Description()}");
        }

        output.WriteLine();
        output.WriteLine("end-to-end latency per request, ms (critical path: host->GPU / GPU->GPU / compute / GPU->host / other; the classifiers run in parallel, the slowest counts)");
        output.WriteLine($"  {"request",-8}" + string.Concat(Modes.All.Select(m => $"{m.Title(),12}{"",38}")));
        for (int i = 0; i < Math.Min(requests, MaxRowsPrinted); i++)
        {
            output.WriteLine($"  {i,-8}" + string.Concat(Modes.All.Select(m => $"{runs[m][i].TotalMs,12:F1}{Breakdown(runs[m][i]),38}")));
        }

        if (requests > MaxRowsPrinted)
        {
            output.WriteLine($"  ({requests - MaxRowsPrinted} more requests: in the summary, and in the chart with --chart)");
        }

        output.WriteLine();
        output.WriteLine($"  {"",-14}{"p50",9}{"p99",9}{"h2d",8}{"g2g",8}{"compute",9}{"d2h",8}{"other",8}   (means of the critical path, ms)");
        foreach (var mode in Modes.All)
        {
            var r = runs[mode];
            output.WriteLine($"  {mode.Title(),-14}{P(r, 0.5),9:F1}{P(r, 0.99),9:F1}{r.Average(x => x.HostToGpuMs),8:F1}{r.Average(x => x.GpuToGpuMs),8:F1}" +
                $"{r.Average(x => x.ComputeMs),9:F1}{r.Average(x => x.GpuToHostMs),8:F1}{r.Average(x => x.OtherMs),8:F1}");
        }

        output.WriteLine();
        foreach (var baseline in new[] { Mode.HostTypical, Mode.HostBest })
        {
            output.WriteLine($"against {baseline.Title(),-14}: FaaSTube's end-to-end latency is {Change(runs, baseline, 0.5)} at p50 ({P(runs[Mode.Tube], 0.5):F1} vs {P(runs[baseline], 0.5):F1} ms) " +
                $"and {Change(runs, baseline, 0.99)} at p99 ({P(runs[Mode.Tube], 0.99):F1} vs {P(runs[baseline], 0.99):F1} ms)");
        }

        var medians = Modes.All.Select(m => Percentile(runs[m].Select(x => x.ComputeMs), 0.5)).ToArray();
        double spread = medians.Max() - medians.Min();
        double noise = Modes.All.Max(m => Percentile(runs[m].Select(x => x.ComputeMs), 0.75) - Percentile(runs[m].Select(x => x.ComputeMs), 0.25));
        bool agree = spread <= Math.Max(0.1 * medians.Average(), noise);
        output.WriteLine($"compute (median, ms): {string.Join(", ", Modes.All.Select((m, i) => $"{m.Title()} {medians[i]:F1}"))}: " +
            (agree ? $"agree within noise (spread {spread:F1} ms, largest interquartile range {noise:F1} ms)" : $"DIFFER by {spread:F1} ms (largest interquartile range {noise:F1} ms)"));
    }

    private static string Breakdown(RequestResult r) => $"{r.HostToGpuMs:F1} / {r.GpuToGpuMs:F1} / {r.ComputeMs:F1} / {r.GpuToHostMs:F1} / {r.OtherMs:F1}";

    /// <summary>"N % lower" (FaaSTube's reduction against the baseline) or "N % higher".</summary>
    private static string Change(Dictionary<Mode, List<RequestResult>> runs, Mode baseline, double q)
    {
        double reduction = 1 - P(runs[Mode.Tube], q) / P(runs[baseline], q);
        return reduction >= 0 ? $"{reduction:P0} lower" : $"{-reduction:P0} higher";
    }

    private static double P(List<RequestResult> results, double q) => Percentile(results.Select(r => r.TotalMs), q);

    public static double Percentile(IEnumerable<double> values, double q)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        return sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];
    }
}
