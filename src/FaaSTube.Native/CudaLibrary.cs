using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FaaSTube.Native;

/// <summary>
/// Finds and loads the CUDA driver (<c>libcuda.so.1</c>, then <c>libcuda.so</c>) and NVRTC
/// (<c>libnvrtc.so.13</c>, <c>.12</c>, then unversioned, in the folders of <see cref="NvrtcSearch"/>;
/// every path tried is in <see cref="NvrtcUnavailableReason"/>) on first use. Loading never throws:
/// <see cref="IsAvailable"/> and <see cref="UnavailableReason"/> say what happened, and any use of
/// CUDA when it is missing throws <see cref="PlatformNotSupportedException"/> with that reason.
/// </summary>
public static class CudaLibrary
{
    internal const string DriverName = "faastube-cuda";
    internal const string NvrtcName = "faastube-nvrtc";
    internal const string NvmlName = "faastube-nvml";

    private static readonly string[] DriverCandidates = OperatingSystem.IsWindows()
        ? ["nvcuda.dll"]
        : ["libcuda.so.1", "libcuda.so"];

    private static readonly string[] NvmlCandidates = OperatingSystem.IsWindows() ? ["nvml.dll"] : ["libnvidia-ml.so.1", "libnvidia-ml.so"];

    private static readonly Lazy<LoadResult> Nvml = new(() => Load(NvmlCandidates, "NVML"), LazyThreadSafetyMode.ExecutionAndPublication);

    private static readonly Lazy<LoadResult> Driver = new(LoadDriver, LazyThreadSafetyMode.ExecutionAndPublication);
    private static readonly Lazy<LoadResult> Nvrtc = new(
        () => Load([.. NvrtcSearch.Candidates(Environment.GetEnvironmentVariable, OperatingSystem.IsWindows())], "NVRTC", $"set {NvrtcSearch.OverrideVariable} to its path"),
        LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>True when the CUDA driver loaded and <c>cuInit</c> succeeded.</summary>
    public static bool IsAvailable => Driver.Value.Available;

    /// <summary>Why CUDA is not available (null when it is).</summary>
    public static string? UnavailableReason => Driver.Value.Reason;

    /// <summary>True when an NVRTC library loaded (runtime compilation of kernels).</summary>
    public static bool IsNvrtcAvailable => Nvrtc.Value.Available;

    /// <summary>Why NVRTC is not available (null when it is).</summary>
    public static string? NvrtcUnavailableReason => Nvrtc.Value.Reason;

    /// <summary>True when NVML loaded (NVLink discovery).</summary>
    public static bool IsNvmlAvailable => Nvml.Value.Available;

    /// <summary>The file name of the driver library that loaded, if any.</summary>
    public static string? DriverLibrary => Driver.Value.LoadedName;

    internal static bool IsDriverLoaded => Driver.IsValueCreated && Driver.Value.Handle != 0;

    /// <summary>Throws <see cref="PlatformNotSupportedException"/> with the reason when CUDA is not available.</summary>
    internal static void ThrowIfUnavailable()
    {
        if (!IsAvailable)
        {
            throw new PlatformNotSupportedException($"CUDA is not available: {UnavailableReason}");
        }
    }

    /// <summary>Throws <see cref="PlatformNotSupportedException"/> with the reason when NVRTC is not available.</summary>
    internal static void ThrowIfNvrtcUnavailable()
    {
        if (!IsNvrtcAvailable)
        {
            throw new PlatformNotSupportedException($"NVRTC is not available: {NvrtcUnavailableReason}");
        }
    }

#pragma warning disable CA2255 // a module initializer is the documented place for a DllImportResolver
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void RegisterResolver() =>
        NativeLibrary.SetDllImportResolver(typeof(CudaLibrary).Assembly, Resolve);

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path) => name switch
    {
        DriverName => Driver.Value.Handle,
        NvrtcName => Nvrtc.Value.Handle,
        NvmlName => Nvml.Value.Handle,
        _ => UcxLibrary.Resolve(name),
    };

    private static LoadResult LoadDriver()
    {
        var loaded = Load(DriverCandidates, "the CUDA driver");
        if (!loaded.Available)
        {
            return loaded;
        }

        // cuInit proves that a usable driver and GPU are present.
        CudaResult init;
        try
        {
            init = cuInitDirect(loaded.Handle);
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return new LoadResult(loaded.Handle, loaded.LoadedName, $"{loaded.LoadedName} loaded but has no cuInit: {e.Message}", false);
        }

        return init == CudaResult.Success
            ? loaded
            : new LoadResult(loaded.Handle, loaded.LoadedName, $"cuInit(0) returned {(int)init} ({init}) from {loaded.LoadedName}: no usable GPU or driver", false);
    }

    /// <summary>Calls cuInit through the export directly: the resolver is not usable while the Lazy is being created.</summary>
    private static unsafe CudaResult cuInitDirect(nint handle)
    {
        var init = (delegate* unmanaged<uint, CudaResult>)NativeLibrary.GetExport(handle, "cuInit");
        return init(0);
    }

    private static LoadResult Load(string[] candidates, string what, string? hint = null)
    {
        var tried = new List<string>();
        foreach (var candidate in candidates)
        {
            if (NativeLibrary.TryLoad(candidate, out nint handle))
            {
                return new LoadResult(handle, candidate, null, true);
            }

            tried.Add(candidate);
        }

        return new LoadResult(0, null, $"{what} was not found (tried {string.Join(", ", tried)}){(hint is null ? "" : $"; {hint}")}", false);
    }

    private sealed record LoadResult(nint Handle, string? LoadedName, string? Reason, bool Available);
}
