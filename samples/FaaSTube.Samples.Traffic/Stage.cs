using FaaSTube.Devices;
using FaaSTube.Kernels;

namespace FaaSTube.Samples.Traffic;

/// <summary>One stage of the traffic-analysis workflow: what it reads, what it writes, its GPU work.</summary>
/// <param name="Name">Stage name (also its process's function name).</param>
/// <param name="OutputBytes">The tensor it produces.</param>
internal sealed record Stage(string Name, long OutputBytes)
{
    private const long MiB = 1 << 20;

    /// <summary>frames (24 MiB) -> preprocess (48 MiB) -> detect (16 MiB) -> classify x K (2 MiB each), as in the paper's traffic pipeline.</summary>
    public static readonly Stage Preprocess = new("preprocess", 48 * MiB);
    public static readonly Stage Detect = new("detect", 16 * MiB);
    public static readonly Stage Classify = new("classify", 2 * MiB);
    public const long FrameBytes = 24 * MiB;

    public static Stage ByName(string name) => name switch
    {
        "preprocess" => Preprocess,
        "detect" => Detect,
        "classify" => Classify,
        _ => throw new ArgumentException($"No stage '{name}'."),
    };

    /// <summary>
    /// The stage's GPU work, two small kernels (NVRTC on CUDA): a checksum over the whole input
    /// (every byte is read) and a fill of the output seeded by it, so the output depends on every
    /// input byte and both runs of the workflow can be compared by checksums.
    /// </summary>
    public static async Task ComputeAsync(GpuStream stream, DeviceMemory input, DeviceMemory output, ulong salt)
    {
        ulong digest = await stream.ChecksumAsync(input);
        await stream.FillPatternAsync(output, digest ^ salt);
        await stream.SynchronizeAsync();
    }

    /// <summary>The same work on the CPU (the kernels' CPU twins, <see cref="DataChecksum"/> and <see cref="DataPattern"/>): the reference results are computed with it.</summary>
    public static void Compute(ReadOnlySpan<byte> input, Span<byte> output, ulong salt) =>
        DataPattern.Fill(output, DataChecksum.Compute(input) ^ salt);
}
