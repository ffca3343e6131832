// FaaSTube workflow sample: a traffic-analysis-like pipeline
//   frames (24 MiB, host) -> preprocess (48 MiB) -> detect (16 MiB) -> classify x K (2 MiB each)
// each stage a function in a process of its own (or all in one process with --in-process), run
// twice: through FaaSTube (data stays on the GPU: zero-copy handoffs) and through host memory
// (every hop GPU -> shared memory -> GPU, the INFless-style baseline). Prints end-to-end latency
// per request with its breakdown, and checks that both runs produced the same results.
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
Console.WriteLine($"FaaSTube workflow sample: {node.Gpus.Backend} backend ({node.Gpus.SelectionReason}), {node.Gpus.Devices[0].Name}");
Console.WriteLine($"pipeline: frames {Mib(Stage.FrameBytes)} -> preprocess {Mib(Stage.Preprocess.OutputBytes)} -> detect {Mib(Stage.Detect.OutputBytes)} -> classify x{options.FanOut} {Mib(Stage.Classify.OutputBytes)}; " +
    $"{options.Requests} requests; stages in {(options.InProcess ? "one process" : "separate processes")}");

var coordinator = await Coordinator.StartAsync(node, options, backend);
await using (coordinator)
{
    var tube = await coordinator.RunAsync("tube");
    var host = await coordinator.RunAsync("host");
    Report.Print(tube, host);
    bool same = tube.Select(r => r.ResultChecksum).SequenceEqual(host.Select(r => r.ResultChecksum));
    Console.WriteLine(same
        ? $"results: identical in both runs (checksums of all {options.Requests * options.FanOut} classifier outputs match)"
        : "results: DIFFERENT between the runs");
    return same ? 0 : 1;
}

static string Mib(long bytes) => (bytes >> 20).ToString(CultureInfo.InvariantCulture) + " MiB";
