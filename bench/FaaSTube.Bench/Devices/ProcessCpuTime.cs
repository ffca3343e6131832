using System.Diagnostics;
using System.Runtime.InteropServices;

namespace FaaSTube.Bench.Devices;

/// <summary>
/// The process's CPU time, all threads: <c>clock_gettime(CLOCK_PROCESS_CPUTIME_ID)</c> on Linux
/// (nanoseconds; <see cref="Process.TotalProcessorTime"/> there counts in 10 ms clock ticks, too coarse
/// for a 100 ms window), else <see cref="Process.TotalProcessorTime"/>.
/// </summary>
internal static partial class ProcessCpuTime
{
    private const int ClockProcessCpuTimeId = 2;

    /// <summary>Where the numbers come from, for the report.</summary>
    public static string Source => OperatingSystem.IsLinux() ? "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)" : "Process.TotalProcessorTime";

    public static TimeSpan Now()
    {
        if (OperatingSystem.IsLinux())
        {
            Span<long> timespec = stackalloc long[2];
            if (clock_gettime(ClockProcessCpuTimeId, ref MemoryMarshal.GetReference(timespec)) == 0)
            {
                return TimeSpan.FromTicks((timespec[0] * TimeSpan.TicksPerSecond) + (timespec[1] / 100));
            }
        }

        using var process = Process.GetCurrentProcess();
        return process.TotalProcessorTime;
    }

    [LibraryImport("libc")]
    private static partial int clock_gettime(int clockId, ref long timespec);
}
