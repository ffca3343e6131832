using System.Diagnostics;
using FaaSTube.Kernels;

namespace FaaSTube.Samples.Traffic;

/// <summary>Invokes one stage: <paramref name="replica"/> tells the classifiers apart (0 for the others).</summary>
internal delegate Task<StageReply> StageInvoker(Stage stage, int replica, StageCall call);

/// <summary>
/// The traffic workflow's one definition, whatever carries it (stage processes over pipes, tasks in
/// one process, functions over HTTP): the frames of a request, the order of the stages and their
/// salts and consumers, how the result's checksum folds the classifiers' outputs, and the critical
/// path of a request's time.
/// </summary>
internal static class TrafficFlow
{
    /// <summary>The seed both samples use unless told otherwise.</summary>
    public const int DefaultSeed = 2026;

    /// <summary>Request <paramref name="request"/>'s frames (-1: the warm-up's): random bytes from <c>seed + request</c>.</summary>
    public static byte[] Frames(int seed, int request)
    {
        var frames = new byte[Stage.FrameBytes];
        new Random(seed + request).NextBytes(frames);
        return frames;
    }

    /// <summary>preprocess (salt 1) -> detect (salt 2, read by every classifier) -> <paramref name="fanOut"/> classifiers in parallel (salts 3, 4, ...).</summary>
    /// <param name="frames">The frames' reference.</param>
    /// <param name="fanOut">How many classifiers.</param>
    /// <param name="invoke">Runs one stage.</param>
    public static async Task<FlowOutputs> RunStagesAsync(string frames, int fanOut, StageInvoker invoke)
    {
        var pre = await invoke(Stage.Preprocess, 0, new StageCall(frames, Salt: 1, Consumers: 1));
        var det = await invoke(Stage.Detect, 0, new StageCall(pre.Output, Salt: 2, Consumers: fanOut));
        var outs = await Task.WhenAll(Enumerable.Range(0, fanOut).Select(k => invoke(Stage.Classify, k, new StageCall(det.Output, Salt: 3 + (ulong)k, Consumers: 1))));
        return new FlowOutputs(pre, det, outs);
    }

    /// <summary>Brings the classifiers' outputs to the host one after another and folds their checksums into the request's result.</summary>
    /// <param name="outputs">The classifiers' replies, in order.</param>
    /// <param name="collect">Brings one output's bytes to the host.</param>
    /// <returns>The result's checksum, and the milliseconds collecting took.</returns>
    public static async Task<(ulong Checksum, double Ms)> CollectAsync(IEnumerable<StageReply> outputs, Func<string, Task<byte[]>> collect)
    {
        long start = Stopwatch.GetTimestamp();
        ulong checksum = 0;
        foreach (var output in outputs)
        {
            checksum = Fold(checksum, await collect(output.Output));
        }

        return (checksum, StageTimes.Ms(start));
    }

    /// <summary>
    /// The result a request's frames must give, computed on the CPU with the kernels' CPU twins
    /// (<see cref="Stage.Compute"/>): what every run of the workflow, on any GPU and through any path, is checked against.
    /// </summary>
    public static ulong Expected(ReadOnlySpan<byte> frames, int fanOut)
    {
        var pre = new byte[Stage.Preprocess.OutputBytes];
        var det = new byte[Stage.Detect.OutputBytes];
        var cls = new byte[Stage.Classify.OutputBytes];
        Stage.Compute(frames, pre, salt: 1);
        Stage.Compute(pre, det, salt: 2);
        ulong checksum = 0;
        for (int k = 0; k < fanOut; k++)
        {
            Stage.Compute(det, cls, salt: 3 + (ulong)k);
            checksum = Fold(checksum, cls);
        }

        return checksum;
    }

    private static ulong Fold(ulong checksum, ReadOnlySpan<byte> output) => checksum * 31 + DataChecksum.Compute(output);
}

/// <summary>The stages' replies for one request.</summary>
internal sealed record FlowOutputs(StageReply Preprocess, StageReply Detect, StageReply[] Classifiers)
{
    /// <summary>Every intermediate's reference (preprocess, detect, the classifiers').</summary>
    public IEnumerable<string> References => Classifiers.Select(c => c.Output).Prepend(Detect.Output).Prepend(Preprocess.Output);

    /// <summary>The request's critical path: arrival, preprocess, detect, the slowest classifier (they run in parallel), collection.</summary>
    /// <param name="totalMs">End to end.</param>
    /// <param name="arrivalMs">Putting the frames where preprocess reads them.</param>
    /// <param name="collectMs">Bringing the results to the host.</param>
    /// <param name="checksum">The result's checksum.</param>
    public RequestResult Result(double totalMs, double arrivalMs, double collectMs, ulong checksum)
    {
        var pre = Preprocess.Times;
        var det = Detect.Times;
        var slowest = Classifiers.Select(o => o.Times).MaxBy(c => c.InputMs + c.ComputeMs + c.OutputMs)!;
        return new RequestResult(
            TotalMs: totalMs,
            HostToGpuMs: arrivalMs + pre.InputMs,
            GpuToGpuMs: pre.OutputMs + det.InputMs + det.OutputMs + slowest.InputMs,
            ComputeMs: pre.ComputeMs + det.ComputeMs + slowest.ComputeMs,
            GpuToHostMs: slowest.OutputMs + collectMs,
            ResultChecksum: checksum);
    }
}
