// FaaSTube workflow sample: a traffic-analysis-like pipeline
//   frames (24 MiB, host) -> preprocess (48 MiB) -> detect (16 MiB) -> classify x K (2 MiB each)
// each stage a function in a process of its own (or all in one process with --in-process), run in
// three modes, interleaved: through FaaSTube (data stays on the GPU: zero-copy handoffs), and through
// host memory, typical (a new pageable shared-memory object per hop) and best (pinned shared memory
// registered once, DMA in and out). Every mode computes on warm device memory. Prints end-to-end
// latency per request with its critical-path breakdown, p50/p99 per mode, FaaSTube's reduction
// against each baseline, and checks that all modes produced the same results.
using System.Globalization;
using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Samples.Workflow;

var options = SampleOptions.Parse(args);
if (options.Worker is { } stageName)
{
    return await WorkerMain.RunAsync(stageName, options);
}

var backend = options.Backend;
await using var node = await TubeNode.StartAsync(new TubeNodeOptions
{
    SocketPath = options.InProcess ? null : Path.Combine(Path.GetTempPath(), $"faastube-sample-{Environment.ProcessId}.sock"),
    Gpus = new GpuSystemOptions { Backend = backend },
    Pool = new FaaSTube.Memory.GpuPoolOptions { SlabBytes = 256L << 20 },
});
backend = node.Gpus.Backend;
string device = $"{node.Gpus.Backend} backend ({node.Gpus.SelectionReason}), {node.Gpus.Devices[0].Name}";
Console.WriteLine($"FaaSTube workflow sample: {device}");
Console.WriteLine($"pipeline: frames {Mib(Stage.FrameBytes)} -> preprocess {Mib(Stage.Preprocess.OutputBytes)} -> detect {Mib(Stage.Detect.OutputBytes)} -> classify x{options.FanOut} {Mib(Stage.Classify.OutputBytes)}; " +
    $"{options.Requests} requests in each of {Modes.All.Length} modes, interleaved; stages in {(options.InProcess ? "one process" : "separate processes")}");

var coordinator = await Coordinator.StartAsync(node, options, backend);
await using (coordinator)
{
    var runs = await RunProgress.RunAsync(coordinator, options.Requests);
    Report.Print(runs, Console.Out);
    var checksums = Modes.All.Select(m => runs[m].Select(r => r.ResultChecksum).ToArray()).ToArray();
    bool same = checksums.All(c => c.SequenceEqual(checksums[0]));
    bool reference = checksums[0].Select((c, r) => c == TrafficFlow.Expected(TrafficFlow.Frames(options.Seed, r), options.FanOut)).All(ok => ok);
    Console.WriteLine(same
        ? $"results: identical in all {Modes.All.Length} modes (checksums of all {options.Requests * options.FanOut} classifier outputs match)"
        : "results: DIFFERENT between the modes");
    Console.WriteLine(reference
        ? $"results: equal to the reference computed on the CPU (TrafficFlow.Expected); first checksums: {string.Join(", ", checksums[0].Take(3).Select(c => c.ToString("x16", CultureInfo.InvariantCulture)))}"
        : "results: DIFFERENT from the reference computed on the CPU");
    if (options.Chart is { } chart)
    {
        LatencyChart.Save(runs, chart, $"{options.Requests} requests per mode, {node.Gpus.Devices[0].Name}");
        Console.WriteLine($"chart: {chart}");
    }

    return same && reference ? 0 : 1;
}

static string Mib(long bytes) => (bytes >> 20).ToString(CultureInfo.InvariantCulture) + " MiB";
