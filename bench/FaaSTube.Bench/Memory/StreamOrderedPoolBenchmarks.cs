using BenchmarkDotNet.Attributes;
using FaaSTube.Devices;
using FaaSTube.Devices.Cuda;
using FaaSTube.Native;
using FaaSTube.Native.Handles;

namespace FaaSTube.Bench.Memory;

/// <summary>
/// CUDA only: the driver's stream-ordered pool (cuMemAllocFromPoolAsync + cuMemFreeAsync on one
/// stream), the fastest allocator the driver has (1.0 us measured), to set beside
/// <see cref="PoolAllocationBenchmarks"/>. Its memory cannot be shared with legacy IPC, which is why
/// the pool does not use it. Fails its setup (reported as NA) where there is no CUDA.
/// </summary>
public class StreamOrderedPoolBenchmarks
{
    private GpuSystem _gpus = null!;
    private CudaGpuDevice _device = null!;
    private SafeCudaStreamHandle _stream = null!;
    private nint _pool;

    [Params(4L << 10, 64L << 10, 1L << 20, 16L << 20, 64L << 20)]
    public long Bytes { get; set; }

    [GlobalSetup]
    public unsafe void Setup()
    {
        _gpus = GpuSystem.Open(new GpuSystemOptions { Backend = GpuBackend.Cuda });
        _device = (CudaGpuDevice)_gpus.Devices[0];
        using var scope = _device.Context.Enter();
        nint pool, stream;
        CudaException.ThrowIfFailed(Interop.Cuda.cuDeviceGetDefaultMemPool(&pool, _device.CudaDevice));
        ulong keep = ulong.MaxValue; // keep freed memory in the pool, as a caching allocator would
        CudaException.ThrowIfFailed(Interop.Cuda.cuMemPoolSetAttribute(pool, CuMemPoolAttribute.ReleaseThreshold, &keep));
        _pool = pool;
        _stream = new SafeCudaStreamHandle(_device.Context);
        CudaException.ThrowIfFailed(Interop.Cuda.cuStreamCreateWithPriority(&stream, CuFlags.StreamNonBlocking, 0));
        _stream.Attach(stream);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stream?.Dispose();
        _gpus?.Dispose();
    }

    [Benchmark(OperationsPerInvoke = PoolAllocationBenchmarks.PerThread)]
    public unsafe void AllocFromPoolAsync()
    {
        using var scope = _device.Context.Enter();
        nint stream = _stream.DangerousGetHandle();
        for (int i = 0; i < PoolAllocationBenchmarks.PerThread; i++)
        {
            ulong pointer;
            CudaException.ThrowIfFailed(Interop.Cuda.cuMemAllocFromPoolAsync(&pointer, (nuint)Bytes, _pool, stream));
            CudaException.ThrowIfFailed(Interop.Cuda.cuMemFreeAsync(pointer, stream));
        }

        CudaException.ThrowIfFailed(Interop.Cuda.cuStreamSynchronize(stream));
    }
}
