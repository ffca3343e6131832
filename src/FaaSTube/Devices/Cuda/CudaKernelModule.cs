using FaaSTube.Kernels;
using FaaSTube.Native;
using FaaSTube.Native.Handles;

namespace FaaSTube.Devices.Cuda;

/// <summary>
/// The built-in kernels loaded into one device's context; the CUBIN comes from
/// <see cref="CudaKernelImages"/> (compiled once per architecture per process). Streams hold a
/// reference (<see cref="AddRef"/>) for as long as they may launch, so disposing the device unloads
/// the module only once its last stream is gone.
/// </summary>
internal sealed unsafe class CudaKernelModule : IDisposable
{
    private readonly SafeCudaModuleHandle _module;

    public CudaKernelModule(CudaGpuDevice device)
    {
        var (major, minor) = device.ComputeCapability;
        byte[] cubin = CudaKernelImages.Get(CudaKernelSource.Source, $"sm_{major}{minor}");

        _module = new SafeCudaModuleHandle(device.Context);
        using var scope = device.Context.Enter();
        nint module;
        CudaResult result;
        fixed (byte* image = cubin)
        {
            result = Interop.Cuda.cuModuleLoadData(&module, image);
        }

        if (result != CudaResult.Success)
        {
            _module.AbandonUnattached();
            CudaException.ThrowIfFailed(result, "cuModuleLoadData(faastube_kernels)");
        }

        _module.Attach(module);
        FillPattern = GetFunction(CudaKernelSource.FillPattern);
        Checksum = GetFunction(CudaKernelSource.Checksum);
        MaxBlocks = (uint)Math.Max(1, device.MultiprocessorCount * 16);
    }

    public nint FillPattern { get; }

    public nint Checksum { get; }

    public uint MaxBlocks { get; }

    public const uint ThreadsPerBlock = 256;

    /// <summary>Blocks for a grid-stride kernel over <paramref name="bytes"/> bytes (one thread per 8-byte word).</summary>
    public uint BlocksFor(long bytes) =>
        (uint)Math.Clamp(((bytes + 7) / 8 + ThreadsPerBlock - 1) / ThreadsPerBlock, 1, MaxBlocks);

    /// <summary>Keeps the module loaded until the matching <see cref="Release"/>.</summary>
    public void AddRef()
    {
        bool added = false;
        _module.DangerousAddRef(ref added);
    }

    public void Release() => _module.DangerousRelease();

    /// <summary>Drops the device's reference; the module unloads when no stream holds it.</summary>
    public void Dispose() => _module.Dispose();

    private nint GetFunction(string name)
    {
        nint function;
        var bytes = System.Text.Encoding.ASCII.GetBytes(name + "\0");
        fixed (byte* p = bytes)
        {
            CudaException.ThrowIfFailed(Interop.Cuda.cuModuleGetFunction(&function, _module.DangerousGetHandle(), p), $"cuModuleGetFunction({name})");
        }

        return function;
    }
}
