using System.Diagnostics;
using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;

namespace FaaSTube.Samples.Probe;

/// <summary>Times copies on one stream: the median of several runs, each synchronised, in GB/s (10^9 bytes per second).</summary>
internal sealed class BandwidthProbe(int iterations, VirtualClock? clock)
{
    public async Task<double> MeasureAsync(long bytes, Func<ValueTask> copy)
    {
        await copy(); // warm-up: first-touch of pages, lazy kernel compile
        var seconds = new double[iterations];
        for (int i = 0; i < iterations; i++)
        {
            var start = clock?.Now ?? TimeSpan.Zero;
            long ticks = Stopwatch.GetTimestamp();
            await copy();
            seconds[i] = clock is null
                ? Stopwatch.GetElapsedTime(ticks).TotalSeconds
                : (clock.Now - start).TotalSeconds;
        }

        Array.Sort(seconds);
        return bytes / seconds[iterations / 2] / 1e9;
    }
}
