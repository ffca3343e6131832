using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using FaaSTube.Native;
using FaaSTube.Native.Handles;

namespace FaaSTube.Devices.Cuda;

/// <summary>
/// CUBIN images of kernel sources, compiled with NVRTC once per (source, architecture) per process:
/// a second device of the same architecture, or a device object opened again, reuses the image
/// instead of compiling for hundreds of milliseconds. A failed compile is not cached (the next
/// caller tries again and sees the error).
/// </summary>
internal static class CudaKernelImages
{
    private static readonly ConcurrentDictionary<ImageKey, Lazy<byte[]>> Images = new();

    /// <summary>The CUBIN of <paramref name="source"/> for <paramref name="architecture"/> (<c>sm_90</c>), compiled on first use.</summary>
    public static byte[] Get(string source, string architecture) =>
        Get(source, architecture, static (src, arch) => NvrtcCompiler.Compile(
            src, "faastube_kernels.cu", [$"--gpu-architecture={arch}", "--std=c++17"], cubin: true));

    /// <summary>As <see cref="Get(string, string)"/> with the compiler given (tests count its calls).</summary>
    internal static byte[] Get(string source, string architecture, Func<string, string, byte[]> compile)
    {
        var key = KeyOf(source, architecture);
        var image = Images.GetOrAdd(key, _ => new Lazy<byte[]>(() => compile(source, architecture), LazyThreadSafetyMode.ExecutionAndPublication));
        try
        {
            return image.Value;
        }
        catch
        {
            Images.TryRemove(new KeyValuePair<ImageKey, Lazy<byte[]>>(key, image));
            throw;
        }
    }

    /// <summary>The cache key: the SHA-256 of the source (hex) and the architecture.</summary>
    internal static ImageKey KeyOf(string source, string architecture)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentException.ThrowIfNullOrWhiteSpace(architecture);
        return new ImageKey(Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(source))), architecture);
    }

    internal readonly record struct ImageKey(string SourceHash, string Architecture);
}
