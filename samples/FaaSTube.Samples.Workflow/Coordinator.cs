using System.Diagnostics;
using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Kernels;

namespace FaaSTube.Samples.Workflow;

/// <summary>One request's end-to-end time and where it went.</summary>
internal sealed record RequestResult(double TotalMs, double HostToGpuMs, double GpuToGpuMs, double ComputeMs, ulong ResultChecksum);

/// <summary>
/// The workflow's driver: it plays the gateway (frames arrive as host bytes), invokes the stages in
/// order (the classifiers in parallel), and collects the classifiers' results to the host.
/// </summary>
internal sealed class Coordinator : IAsyncDisposable
{
    private readonly SampleOptions _options;
    private readonly TubeClient _gateway;
    private readonly IStage _preprocess;
    private readonly IStage _detect;
    private readonly IStage[] _classifiers;

    private Coordinator(SampleOptions options, TubeClient gateway, IStage preprocess, IStage detect, IStage[] classifiers)
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
        return new Coordinator(options, gateway, stages[0], stages[1], stages[2..]);
    }

    /// <summary>Runs every request through the workflow in one mode ("tube" or "host").</summary>
    public async Task<List<RequestResult>> RunAsync(string mode)
    {
        var results = new List<RequestResult>();
        await RunOneAsync(mode, -1); // warm-up: first-touch of memory, kernel compilation, slab mapping
        for (int r = 0; r < _options.Requests; r++)
        {
            results.Add(await RunOneAsync(mode, r));
        }

        return results;
    }

    private async Task<RequestResult> RunOneAsync(string mode, int request)
    {
        var frames = new byte[Stage.FrameBytes];
        new Random(_options.Seed + request).NextBytes(frames);
        bool tube = mode == "tube";
        long start = Stopwatch.GetTimestamp();

        // Frames arrive at the gateway in host memory: into the GPU pool (tube) or into shared memory (host).
        long t = Stopwatch.GetTimestamp();
        string framesRef = tube ? (await _gateway.PutAsync(frames)).ToString() : HostFiles.Write(frames);
        double hostToGpu = tube ? StageTimes.Ms(t) : 0;
        double gpuToGpu = 0, compute = 0;

        void Account(StageTimes s, bool firstStage)
        {
            compute += s.ComputeMs;
            if (firstStage)
            {
                hostToGpu += s.InputMs; // the frames' way onto the GPU
            }
            else
            {
                gpuToGpu += s.InputMs;
            }

            gpuToGpu += s.OutputMs;
        }

        var (pre, preTimes) = await Invoke(_preprocess, mode, framesRef, salt: 1, consumers: 1);
        Account(preTimes, firstStage: true);
        var (det, detTimes) = await Invoke(_detect, mode, pre, salt: 2, consumers: _classifiers.Length);
        Account(detTimes, firstStage: false);
        var outs = await Task.WhenAll(_classifiers.Select((c, k) => Invoke(c, mode, det, salt: 3 + (ulong)k, consumers: 1)));
        foreach (var (_, times) in outs)
        {
            Account(times, firstStage: false);
        }

        // The results go back to the host.
        ulong checksum = 0;
        t = Stopwatch.GetTimestamp();
        foreach (var (reference, _) in outs)
        {
            var result = new byte[Stage.Classify.OutputBytes];
            if (tube)
            {
                await _gateway.GetAsync(TubeId.Parse(reference), result.AsMemory());
            }
            else
            {
                result = await File.ReadAllBytesAsync(reference);
            }

            checksum = checksum * 31 + DataChecksum.Compute(result);
        }

        gpuToGpu += StageTimes.Ms(t) / 2; // the last hop: counted as GPU -> host
        if (!tube)
        {
            foreach (var file in new[] { framesRef, pre, det }.Concat(outs.Select(o => o.Reference)))
            {
                HostFiles.Delete(file);
            }
        }

        return new RequestResult(StageTimes.Ms(start), hostToGpu, gpuToGpu, compute, checksum);
    }

    private static async Task<(string Reference, StageTimes Times)> Invoke(IStage stage, string mode, string input, ulong salt, int consumers)
    {
        var reply = (await stage.RunAsync($"{mode} {input} {salt} {consumers}")).Split(' ');
        return (reply[0], StageTimes.Parse(reply, 1));
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var stage in _classifiers.Prepend(_detect).Prepend(_preprocess))
        {
            await stage.DisposeAsync();
        }

        await _gateway.DisposeAsync();
    }
}
