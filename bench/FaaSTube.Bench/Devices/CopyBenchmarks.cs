using BenchmarkDotNet.Attributes;
using FaaSTube.Devices;
using FaaSTube.Devices.Cuda;
using FaaSTube.Native;

namespace FaaSTube.Bench.Devices;

/// <summary>What a copy reads and writes.</summary>
public enum CopyKind
{
    /// <summary>Host to GPU from pinned memory.</summary>
    H2DPinned,
    /// <summary>Host to GPU from a pageable byte[].</summary>
    H2DPageable,
    /// <summary>GPU to host into pinned memory.</summary>
    D2HPinned,
    /// <summary>GPU to host into a pageable byte[].</summary>
    D2HPageable,
    /// <summary>GPU to GPU on one device.</summary>
    D2D,
}

/// <summary>
/// Copy bandwidth by size and direction on the active backend: FaaSTube's stream copy against the
/// raw copy it wraps (the synchronous driver call on CUDA, memcpy on the simulated GPU), in the same
/// run. Sizes: FAASTUBE_BENCH_SIZES (MiB, comma-separated) or 1 MiB - 1 GiB.
/// </summary>
[MovesBytes]
public class CopyBenchmarks
{
    private GpuSystem _gpus = null!;
    private GpuStream _stream = null!;
    private DeviceBuffer _a = null!;
    private DeviceBuffer _b = null!;
    private PinnedBuffer _pinned = null!;
    private byte[] _pageable = null!;

    [ParamsSource(nameof(Sizes))]
    public long Bytes { get; set; }

    [ParamsAllValues]
    public CopyKind Kind { get; set; }

    public static IEnumerable<long> Sizes() =>
        (Environment.GetEnvironmentVariable("FAASTUBE_BENCH_SIZES") ?? "1,16,256,1024")
        .Split(',').Select(s => long.Parse(s, System.Globalization.CultureInfo.InvariantCulture) << 20);

    [GlobalSetup]
    public void Setup()
    {
        _gpus = GpuSystem.Open();
        var device = _gpus.Devices[0];
        Console.WriteLine($"// backend {_gpus.Backend}: {_gpus.SelectionReason}; device {device}");
        _stream = device.CreateStream();
        _a = device.Allocate(Bytes);
        _b = device.Allocate(Bytes);
        _pinned = device.AllocatePinned(Bytes);
        _pageable = new byte[Bytes];
        Random.Shared.NextBytes(_pageable);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stream.Dispose();
        _a.Dispose();
        _b.Dispose();
        ((IDisposable)_pinned).Dispose();
        _gpus.Dispose();
    }

    /// <summary>Through FaaSTube: GpuStream.CopyAsync, awaited (the GPU work is complete when it returns).</summary>
    [Benchmark]
    public async Task Stream() => await (Kind switch
    {
        CopyKind.H2DPinned => _stream.CopyAsync(_pinned.Memory, _a),
        CopyKind.H2DPageable => _stream.CopyAsync(_pageable, _a),
        CopyKind.D2HPinned => _stream.CopyAsync(_a, _pinned.Memory),
        CopyKind.D2HPageable => _stream.CopyAsync(_a, _pageable.AsMemory()),
        _ => _stream.CopyAsync(_a, _b),
    });

    /// <summary>The raw copy it wraps: synchronous cuMemcpy* on CUDA, memcpy on the simulated GPU.</summary>
    [Benchmark(Baseline = true)]
    public unsafe void Raw()
    {
        fixed (byte* pageable = _pageable)
        {
            byte* host = Kind is CopyKind.H2DPinned or CopyKind.D2HPinned ? (byte*)_pinned.Pointer : pageable;
            if (_gpus.Backend == GpuBackend.Cuda)
            {
                RawCuda(host);
            }
            else
            {
                byte* a = (byte*)_a.Address, b = (byte*)_b.Address;
                switch (Kind)
                {
                    case CopyKind.H2DPinned or CopyKind.H2DPageable: Buffer.MemoryCopy(host, a, Bytes, Bytes); break;
                    case CopyKind.D2HPinned or CopyKind.D2HPageable: Buffer.MemoryCopy(a, host, Bytes, Bytes); break;
                    default: Buffer.MemoryCopy(a, b, Bytes, Bytes); break;
                }
            }
        }
    }

    private unsafe void RawCuda(byte* host)
    {
        using var scope = ((CudaGpuDevice)_gpus.Devices[0]).Context.Enter();
        switch (Kind)
        {
            case CopyKind.H2DPinned or CopyKind.H2DPageable:
                CudaException.ThrowIfFailed(Interop.Cuda.cuMemcpyHtoD(_a.Address, host, (nuint)Bytes));
                break;
            case CopyKind.D2HPinned or CopyKind.D2HPageable:
                CudaException.ThrowIfFailed(Interop.Cuda.cuMemcpyDtoH(host, _a.Address, (nuint)Bytes));
                break;
            default:
                CudaException.ThrowIfFailed(Interop.Cuda.cuMemcpyDtoDAsync(_b.Address, _a.Address, (nuint)Bytes, 0));
                CudaException.ThrowIfFailed(Interop.Cuda.cuCtxSynchronize());
                break;
        }
    }
}
