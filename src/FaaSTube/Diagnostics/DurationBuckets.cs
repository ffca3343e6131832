namespace FaaSTube.Diagnostics;

/// <summary>
/// The bucket advice of FaaSTube's duration histograms, in seconds. The conventions' advice for
/// <c>http.server.request.duration</c> steps 1, 2.5, 5 (with 7.5) from 5 ms to 10 s; FaaSTube's calls
/// are IPC on one machine, most of them well under a millisecond, so the same steps start at 10 us.
/// </summary>
internal static class DurationBuckets
{
    public static IReadOnlyList<double> Seconds { get; } =
    [
        0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075,
        0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
    ];
}
