using System.Diagnostics;
using FaaSTube.Channels;
using FaaSTube.Devices;

namespace FaaSTube.Samples.Workflow;

/// <summary>
/// The workflow's driver: it plays the gateway (frames arrive as host bytes), invokes the stages in
/// order (the classifiers in parallel), and collects the classifiers' results to the host.
/// </summary>
internal sealed class Coordinator : IAsyncDisposable
{
    private readonly SampleOptions _options;
    private readonly Gateway _gateway;
    private readonly IStage _preprocess;
    private readonly IStage _detect;
    private readonly IStage[] _classifiers;

    private Coordinator(SampleOptions options, Gateway gateway, IStage preprocess, IStage detect, IStage[] classifiers)
    {
        _options = options;
        _gateway = gateway;
        _preprocess = preprocess;
        _detect = detect;
        _classifiers = classifiers;
    }

    public static async Task<Coordinator> StartAsync(TubeNode node, SampleOptions options, GpuBackend backend)
    {
        var clientOptions = (string function) => new TubeClientOptions
        {
            SocketPath = node.SocketPath ?? "",
            Workflow = options.Workflow,
            Function = function,
            WindowBytes = 32 << 20,
            Gpus = new GpuSystemOptions { Backend = backend },
        };
        var gateway = options.InProcess || node.SocketPath is null
            ? await TubeClient.ConnectInProcessAsync(node, clientOptions("gateway"))
            : await TubeClient.ConnectAsync(clientOptions("gateway"));

        async Task<IStage> Start(Stage stage)
        {
            if (options.InProcess)
            {
                var client = await TubeClient.ConnectInProcessAsync(node, clientOptions(stage.Name));
                return new StageTask(new StageWorker(client, stage), client);
            }

            return await StageProcess.StartAsync(stage.Name, node.SocketPath!, options.Workflow, backend.ToString());
        }

        var stages = await Task.WhenAll(new[] { Stage.Preprocess, Stage.Detect }.Concat(Enumerable.Repeat(Stage.Classify, options.FanOut)).Select(Start));
        return new Coordinator(options, new Gateway(gateway), stages[0], stages[1], stages[2..]);
    }

    /// <summary>
    /// Runs every request through the workflow in every mode, interleaved (request r in all modes,
    /// the order rotating, before request r + 1) so that drift on a shared machine hits all modes
    /// alike. Each mode first runs one warm-up request (first touch of memory, kernel compilation,
    /// mappings and registrations), which is not reported.
    /// </summary>
    public async Task<Dictionary<Mode, List<RequestResult>>> RunAsync(Action warmedUp, Action<Mode> requestDone)
    {
        var results = Modes.All.ToDictionary(m => m, _ => new List<RequestResult>());
        foreach (var mode in Modes.All)
        {
            await RunOneAsync(mode, -1);
        }

        warmedUp();
        for (int r = 0; r < _options.Requests; r++)
        {
            for (int i = 0; i < Modes.All.Length; i++)
            {
                var mode = Modes.All[(r + i) % Modes.All.Length];
                results[mode].Add(await RunOneAsync(mode, r));
                requestDone(mode);
            }
        }

        return results;
    }

    private async Task<RequestResult> RunOneAsync(Mode mode, int request)
    {
        var frames = TrafficFlow.Frames(_options.Seed, request);
        var files = new List<string>(); // typical: this request's shared-memory objects, deleted after it
        long start = Stopwatch.GetTimestamp();

        // Frames arrive at the gateway in host memory: into the GPU pool (tube) or into shared memory (host modes).
        long t = Stopwatch.GetTimestamp();
        string framesRef = await _gateway.ArriveAsync(mode, frames, files);
        double gatewayMs = StageTimes.Ms(t);

        var flow = await TrafficFlow.RunStagesAsync(framesRef, _classifiers.Length, (stage, k, call) => Invoke(Pick(stage, k), mode, call));
        files.AddRange(flow.References);

        // The results go back to the host (the gateway's reply), one after another.
        var (checksum, collectMs) = await TrafficFlow.CollectAsync(flow.Classifiers, reference => _gateway.CollectAsync(mode, reference));
        double total = StageTimes.Ms(start);
        if (mode == Mode.HostTypical)
        {
            files.ForEach(HostRegion.Delete);
        }

        return flow.Result(total, gatewayMs, collectMs, checksum);
    }

    private IStage Pick(Stage stage, int replica) =>
        stage == Stage.Preprocess ? _preprocess : stage == Stage.Detect ? _detect : _classifiers[replica];

    private static async Task<StageReply> Invoke(IStage stage, Mode mode, StageCall call) =>
        StageReply.Parse(await stage.RunAsync($"{mode.Wire()} {call}"));

    public async ValueTask DisposeAsync()
    {
        foreach (var stage in _classifiers.Prepend(_detect).Prepend(_preprocess))
        {
            await stage.DisposeAsync();
        }

        await _gateway.DisposeAsync();
    }
}
