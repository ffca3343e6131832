using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;

namespace FaaSTube.Native;

/// <summary>
/// Finds and loads UCX (<c>libucp.so.0</c> and <c>libucs.so.0</c>, then their unversioned names)
/// on first use: the transport between machines. Loading never throws: <see cref="IsAvailable"/>
/// and <see cref="UnavailableReason"/> say what happened, and any use of UCX when it is missing
/// throws <see cref="PlatformNotSupportedException"/> saying what to install. Nothing on one
/// machine needs UCX.
/// </summary>
public static class UcxLibrary
{
    internal const string UcpName = "faastube-ucp";
    internal const string UcsName = "faastube-ucs";

    /// <summary>What to install, in every message about a missing UCX.</summary>
    internal const string InstallHint =
        "install libucx0 (Debian/Ubuntu: apt-get install libucx0; elsewhere UCX 1.13 or later from https://openucx.org); "
        + "everything on one machine works without it";

    private static readonly string[] UcpCandidates = ["libucp.so.0", "libucp.so"];
    private static readonly string[] UcsCandidates = ["libucs.so.0", "libucs.so"];

    private static readonly Lazy<LoadResult> Loaded = new(() => Load(UcpCandidates, UcsCandidates), LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>True when libucp and libucs loaded.</summary>
    public static bool IsAvailable => Loaded.Value.Available;

    /// <summary>Why UCX is not available (null when it is).</summary>
    public static string? UnavailableReason => Loaded.Value.Reason;

    /// <summary>The version of the libucp that loaded (<c>ucp_get_version_string</c>), if any.</summary>
    public static string? Version => Loaded.Value.Version;

    /// <summary>Loads UCX if it is not loaded yet; false with the reason when it cannot be.</summary>
    /// <param name="reason">Why UCX is not available, naming what to install; null when it is.</param>
    public static bool TryLoad([NotNullWhen(false)] out string? reason)
    {
        reason = Loaded.Value.Reason;
        return Loaded.Value.Available;
    }

    /// <summary>Throws <see cref="PlatformNotSupportedException"/> with the reason when UCX is not available.</summary>
    internal static void ThrowIfUnavailable()
    {
        if (!IsAvailable)
        {
            throw new PlatformNotSupportedException(UnavailableMessage(UnavailableReason));
        }
    }

    internal static string UnavailableMessage(string? reason) => $"UCX is not available: {reason}";

    /// <summary>Called by the assembly's one DllImportResolver (<see cref="CudaLibrary"/>).</summary>
    internal static nint Resolve(string name) => name switch
    {
        UcpName => Loaded.Value.Ucp,
        UcsName => Loaded.Value.Ucs,
        _ => 0,
    };

    /// <summary>
    /// Loads the first of each list that loads, or says why not. The libraries of a failed probe are
    /// freed; tests pass names that do not exist to see the message.
    /// </summary>
    internal static string? Probe(string[] ucpCandidates, string[] ucsCandidates)
    {
        var result = Load(ucpCandidates, ucsCandidates);
        if (result.Available)
        {
            NativeLibrary.Free(result.Ucp);
            NativeLibrary.Free(result.Ucs);
        }

        return result.Reason;
    }

    private static LoadResult Load(string[] ucpCandidates, string[] ucsCandidates)
    {
        if (!OperatingSystem.IsLinux())
        {
            return LoadResult.Missing($"UCX is bound on Linux only; {InstallHint}");
        }

        nint ucp;
        nint ucs;
        string? ucpName;
        bool ucsLoaded;
        // First, ask libucs for no error-signal handlers at all (an empty UCX_ERROR_SIGNALS; a value the
        // user set is kept): the runtime's own handlers stay the process's, whatever UCX does later.
        // The handlers are also saved and put back around the load, for a user's value that names some.
        _ = Interop.Libc.setenv("UCX_ERROR_SIGNALS", "", 0);
        using (KeepRuntimeSignalHandlers())
        {
            if (!TryLoadFirst(ucpCandidates, out ucp, out ucpName))
            {
                return LoadResult.Missing($"libucp was not found (tried {string.Join(", ", ucpCandidates)}): {InstallHint}");
            }

            ucsLoaded = TryLoadFirst(ucsCandidates, out ucs, out _);
        }

        if (!ucsLoaded)
        {
            NativeLibrary.Free(ucp);
            return LoadResult.Missing($"{ucpName} loaded but libucs was not found (tried {string.Join(", ", ucsCandidates)}): {InstallHint}");
        }

        // The exports this binding needs first; a library without them is not a usable UCX.
        string? version;
        try
        {
            version = VersionDirect(ucp);
            _ = NativeLibrary.GetExport(ucp, "ucp_init_version");
            _ = NativeLibrary.GetExport(ucs, "ucs_status_string");
        }
        catch (EntryPointNotFoundException e)
        {
            NativeLibrary.Free(ucp);
            NativeLibrary.Free(ucs);
            return LoadResult.Missing($"{ucpName} loaded but is not a usable UCX ({e.Message}): {InstallHint}");
        }

        return new LoadResult(ucp, ucs, version, null, true);
    }

    /// <summary>The signals the runtime turns into exceptions when they come from managed code.</summary>
    private static readonly int[] RuntimeSignals = [Interop.Libc.SIGSEGV, Interop.Libc.SIGBUS, Interop.Libc.SIGFPE, Interop.Libc.SIGILL];

    /// <summary>
    /// Saves the handlers of <see cref="RuntimeSignals"/> and puts them back when disposed. libucs,
    /// as it loads, installs its own error handler for them (UCX_HANDLE_ERRORS=bt with
    /// UCX_ERROR_SIGNALS=ILL,SEGV,BUS,FPE by default) in place of the runtime's, which turns a fault in
    /// managed code into an exception: with UCX's in place, the first NullReferenceException
    /// (a SIGSEGV near address 0) or integer division by zero (a SIGFPE) anywhere in the process
    /// printed "Caught signal 11 (Segmentation fault: address not mapped to object at address 0x28)"
    /// and killed it. So the process keeps the runtime's handlers; a fault inside UCX itself then ends
    /// the process as any native fault does (without UCX's backtrace). A fault on another thread in
    /// the instant between the load and the restore would still meet UCX's handler.
    /// </summary>
    private static unsafe SignalHandlers KeepRuntimeSignalHandlers()
    {
        var saved = new byte[RuntimeSignals.Length * Interop.Libc.SigactionBytes];
        var valid = new bool[RuntimeSignals.Length];
        fixed (byte* p = saved)
        {
            for (int i = 0; i < RuntimeSignals.Length; i++)
            {
                valid[i] = Interop.Libc.sigaction(RuntimeSignals[i], null, p + (i * Interop.Libc.SigactionBytes)) == 0;
            }
        }

        return new SignalHandlers(saved, valid);
    }

    /// <summary>The runtime's handlers as they were before UCX loaded; disposing installs them again.</summary>
    private readonly struct SignalHandlers(byte[] saved, bool[] valid) : IDisposable
    {
        public unsafe void Dispose()
        {
            fixed (byte* p = saved)
            {
                for (int i = 0; i < RuntimeSignals.Length; i++)
                {
                    if (valid[i])
                    {
                        _ = Interop.Libc.sigaction(RuntimeSignals[i], p + (i * Interop.Libc.SigactionBytes), null);
                    }
                }
            }
        }
    }

    private static bool TryLoadFirst(string[] candidates, out nint handle, [NotNullWhen(true)] out string? loaded)
    {
        foreach (var candidate in candidates)
        {
            if (NativeLibrary.TryLoad(candidate, out handle))
            {
                loaded = candidate;
                return true;
            }
        }

        handle = 0;
        loaded = null;
        return false;
    }

    /// <summary>ucp_get_version_string through the export directly: the resolver is not usable while the Lazy is being created.</summary>
    private static unsafe string? VersionDirect(nint ucp)
    {
        var get = (delegate* unmanaged<byte*>)NativeLibrary.GetExport(ucp, "ucp_get_version_string");
        return Marshal.PtrToStringUTF8((nint)get());
    }

    private sealed record LoadResult(nint Ucp, nint Ucs, string? Version, string? Reason, bool Available)
    {
        public static LoadResult Missing(string reason) => new(0, 0, null, reason, false);
    }
}
