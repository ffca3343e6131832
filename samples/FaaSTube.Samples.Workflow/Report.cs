namespace FaaSTube.Samples.Workflow;

/// <summary>Prints the per-request latencies and their breakdown for both runs.</summary>
internal static class Report
{
    public static void Print(List<RequestResult> tube, List<RequestResult> host)
    {
        Console.WriteLine();
        Console.WriteLine("end-to-end latency per request, ms (breakdown: host->GPU / GPU->GPU / compute)");
        Console.WriteLine($"  {"request",-8}{"FaaSTube",12}{"breakdown",28}{"host memory",14}{"breakdown",28}");
        for (int i = 0; i < tube.Count; i++)
        {
            Console.WriteLine($"  {i,-8}{tube[i].TotalMs,12:F1}{Breakdown(tube[i]),28}{host[i].TotalMs,14:F1}{Breakdown(host[i]),28}");
        }

        Console.WriteLine();
        Console.WriteLine($"  {"",-8}{"p50",10}{"p99",10}{"mean h2d",10}{"mean g2g",10}{"mean comp",11}");
        Line("FaaSTube", tube);
        Line("host mem", host);
        double reduction = 1 - Percentile(tube.Select(r => r.TotalMs), 0.5) / Percentile(host.Select(r => r.TotalMs), 0.5);
        Console.WriteLine($"FaaSTube p50 end-to-end latency is {reduction:P0} lower than passing through host memory");
    }

    private static void Line(string name, List<RequestResult> results) =>
        Console.WriteLine($"  {name,-8}{Percentile(results.Select(r => r.TotalMs), 0.5),10:F1}{Percentile(results.Select(r => r.TotalMs), 0.99),10:F1}" +
            $"{results.Average(r => r.HostToGpuMs),10:F1}{results.Average(r => r.GpuToGpuMs),10:F1}{results.Average(r => r.ComputeMs),11:F1}");

    private static string Breakdown(RequestResult r) => $"{r.HostToGpuMs:F1} / {r.GpuToGpuMs:F1} / {r.ComputeMs:F1}";

    private static double Percentile(IEnumerable<double> values, double q)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        return sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];
    }
}
