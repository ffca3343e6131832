using System.Diagnostics;
using System.Globalization;

namespace FaaSTube.Samples.Traffic;

/// <summary>Where one stage invocation spent its time: getting its input onto the GPU, computing, handing its output on.</summary>
internal sealed record StageTimes(double InputMs, double ComputeMs, double OutputMs)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{InputMs:F3} {ComputeMs:F3} {OutputMs:F3}");

    public static StageTimes Parse(string[] parts, int at) => new(
        double.Parse(parts[at], CultureInfo.InvariantCulture),
        double.Parse(parts[at + 1], CultureInfo.InvariantCulture),
        double.Parse(parts[at + 2], CultureInfo.InvariantCulture));

    public static double Ms(long since) => Stopwatch.GetElapsedTime(since).TotalMilliseconds;
}
