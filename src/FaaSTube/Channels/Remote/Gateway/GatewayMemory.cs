using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Libc = FaaSTube.Native.Interop.Libc;

namespace FaaSTube.Channels.Remote.Gateway;

/// <summary>
/// The network gateway's bound on its own memory (<see cref="TubeNodeOptions.GatewayMemoryLimit"/>),
/// applied by the gateway to itself before it loads UCX. UCX reassembles a peer's eager active message
/// (every message, for a peer that sets <c>UCX_RNDV_THRESH=inf</c>) in a buffer it mallocs for the
/// whole message as its first fragment arrives, before <see cref="RemoteSession.OnMessage"/> sees and
/// refuses it: without a bound a peer makes the gateway as large as what it sends, until the kernel's
/// OOM killer picks a victim, maybe the node.
/// <list type="bullet">
/// <item>RLIMIT_DATA, soft and hard, to the limit: Linux counts a process's private writable mappings
/// against it (the brk heap, anonymous mmap, thread stacks, the managed heap's committed pages;
/// mprotect to writable is checked too), not PROT_NONE reservations (the GC's and glibc's) or shared
/// mappings (the remote clients' windows are memfd). An allocation past it fails (ENOMEM): UCX's
/// malloc of a reassembly buffer returns null and the message is dropped, or the gateway dies and
/// the supervisor starts it again.</item>
/// <item>The managed heap to half the limit (<c>GCHeapHardLimit</c> through
/// <see cref="AppContext.SetData"/> and <see cref="GC.RefreshMemoryLimit"/>): the GC works to stay
/// under it and throws <see cref="OutOfMemoryException"/> at it, well before the process's bound, so
/// what is left is UCX's, the runtime's and the threads'.</item>
/// </list>
/// A gateway that cannot set either does not serve: it says why and exits.
/// </summary>
internal static partial class GatewayMemory
{
    /// <summary>The managed heap's share of the limit: half.</summary>
    public static long HeapLimit(long limit) => limit / 2;

    /// <summary>Bounds this process to <paramref name="limit"/> bytes; null once done, else why it could not (logged; the gateway then exits).</summary>
    public static string? Apply(long limit, ILogger logger)
    {
        string? refused = TryApply(limit, logger);
        if (refused is not null)
        {
            LogUnbounded(logger, refused);
        }

        return refused;
    }

    private static string? TryApply(long limit, ILogger logger)
    {
        if (limit < TubeNodeOptions.MinGatewayMemoryLimit)
        {
            return $"The gateway's memory limit ({limit} bytes) is under {TubeNodeOptions.MinGatewayMemoryLimit} bytes (GatewayMemoryLimit).";
        }

        if (!OperatingSystem.IsLinux())
        {
            return "The gateway bounds its memory with RLIMIT_DATA, which only Linux has.";
        }

        long heap = HeapLimit(limit);
        try
        {
            AppContext.SetData("GCHeapHardLimit", (ulong)heap);
            GC.RefreshMemoryLimit();
        }
        catch (InvalidOperationException e)
        {
            return $"The managed heap could not be bounded to {heap} bytes (GCHeapHardLimit): {e.Message}";
        }

        long managed = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (managed > heap)
        {
            return $"The managed heap could not be bounded to {heap} bytes: the GC still allows {managed} (GCHeapHardLimit did not take).";
        }

        if (Libc.getrlimit(Libc.RLIMIT_DATA, out var was) != 0)
        {
            return $"getrlimit(RLIMIT_DATA) failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}.";
        }

        ulong bound = Math.Min((ulong)limit, was.Maximum); // a lower ceiling set on the node stays
        long inUse = DataInUse();
        if (inUse >= 0 && (ulong)inUse >= bound)
        {
            return $"The gateway already holds {inUse} bytes of data, not under its limit of {bound} bytes (GatewayMemoryLimit).";
        }

        var now = new Libc.RLimit { Current = bound, Maximum = bound };
        if (Libc.setrlimit(Libc.RLIMIT_DATA, in now) != 0)
        {
            return $"setrlimit(RLIMIT_DATA, {bound}) failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}.";
        }

        LogBounded(logger, (long)bound, heap, inUse);
        return null;
    }

    /// <summary>This process's VmData (/proc/self/status, what RLIMIT_DATA is checked against), bytes; -1 where it cannot be read.</summary>
    internal static long DataInUse() => StatusBytes("/proc/self/status", "VmData:");

    /// <summary>A "Name:   N kB" line of a /proc/PID/status file, in bytes; -1 when the file or the line is not there.</summary>
    internal static long StatusBytes(string file, string field)
    {
        try
        {
            foreach (string line in File.ReadLines(file))
            {
                if (line.StartsWith(field, StringComparison.Ordinal))
                {
                    string value = line[field.Length..].Trim();
                    int space = value.IndexOf(' ', StringComparison.Ordinal);
                    return long.Parse(space < 0 ? value : value[..space], NumberStyles.None, CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
        }

        return -1;
    }

    [LoggerMessage(Level = LogLevel.Critical, Message = "Network gateway: its memory could not be bounded, so it does not serve: {Reason}")]
    private static partial void LogUnbounded(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Network gateway memory bounded: {Limit} bytes of data (RLIMIT_DATA), {Heap} of managed heap (GC hard limit); {InUse} bytes of data in use now")]
    private static partial void LogBounded(ILogger logger, long limit, long heap, long inUse);
}
