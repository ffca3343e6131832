using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using FaaSTube.Samples.FunctionHost.Gateway;
using FaaSTube.Samples.FunctionHost.Hosting;
using FaaSTube.Samples.Traffic;

namespace FaaSTube.Samples.FunctionHost.Launcher;

/// <summary>
/// <c>--all</c>: starts the <see cref="LocalPlatform"/>, sends one warm-up request and then
/// <see cref="LaunchOptions.Requests"/> requests through the gateway (the frames of
/// <see cref="TrafficFlow.Frames"/>, as the workflow sample makes them for the same seed), and prints
/// each request's latency and checksum, checked against the reference result
/// (<see cref="TrafficFlow.Expected"/>), then p50 and p99.
/// </summary>
internal static class TrafficRun
{
    public static async Task<int> RunAsync(LaunchOptions options)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(5) };
        await using var platform = await LocalPlatform.StartAsync(options, http);
        var gpu = platform.Node.Gpus;
        Console.WriteLine($"FaaSTube function host sample: {gpu.Backend} backend ({gpu.SelectionReason}), {gpu.Devices[0].Name}");
        Console.WriteLine($"node on {platform.Node.SocketPath}; functions: preprocess, detect, classify x{options.FanOut} (a process each); gateway on {platform.Gateway.Url}");
        Console.WriteLine($"{options.Requests} requests, seed {options.Seed}, after one warm-up request");

        await SendAsync(http, platform.Gateway.Url, options, -1);
        Console.WriteLine();
        Console.WriteLine($"  {"request",-8}{"ms",9}{"h2d",8}{"g2g",8}{"compute",9}{"d2h",8}{"other",8}  {"checksum",-16}  reference");
        var latencies = new List<double>();
        int wrong = 0;
        for (int r = 0; r < options.Requests; r++)
        {
            var (ms, answer, expected) = await SendAsync(http, platform.Gateway.Url, options, r);
            latencies.Add(ms);
            bool same = answer.Checksum == expected;
            wrong += same ? 0 : 1;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {r,-8}{ms,9:F1}{answer.HostToGpuMs,8:F1}{answer.GpuToGpuMs,8:F1}{answer.ComputeMs,9:F1}{answer.GpuToHostMs,8:F1}{answer.OtherMs,8:F1}  {answer.Checksum,-16}  {(same ? "same" : $"DIFFERENT: {expected}")}"));
        }

        latencies.Sort();
        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"end to end, at the caller (HTTP to the gateway included): p50 {Percentile(latencies, 0.5):F1} ms, p99 {Percentile(latencies, 0.99):F1} ms"));
        Console.WriteLine(wrong == 0
            ? $"results: all {options.Requests} checksums equal the reference (the workflow sample's stages, computed on the CPU)"
            : $"results: {wrong} of {options.Requests} checksums DIFFERENT from the reference");
        return wrong == 0 ? 0 : 1;
    }

    private static async Task<(double Ms, TrafficResponse Answer, string Expected)> SendAsync(HttpClient http, Uri gateway, LaunchOptions options, int request)
    {
        var frames = TrafficFlow.Frames(options.Seed, request);
        using var content = new ByteArrayContent(frames);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        long start = Stopwatch.GetTimestamp();
        using var response = await http.PostAsync(new Uri(gateway, "traffic"), content);
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"The gateway answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        }

        var answer = await response.Content.ReadFromJsonAsync(HostJson.Default.TrafficResponse)
            ?? throw new InvalidOperationException("The gateway answered no result.");
        double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        return (ms, answer, TrafficFlow.Expected(frames, options.FanOut).ToString("x16", CultureInfo.InvariantCulture));
    }

    private static double Percentile(List<double> sorted, double p) => sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];
}
