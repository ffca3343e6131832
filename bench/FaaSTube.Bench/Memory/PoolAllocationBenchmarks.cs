using BenchmarkDotNet.Attributes;
using FaaSTube.Devices;
using FaaSTube.Memory;

namespace FaaSTube.Bench.Memory;

/// <summary>
/// Allocate + free latency, 4 KiB - 64 MiB, on 1 and 8 threads: the pool against the device's own
/// allocator (cuMemAlloc/cuMemFree on CUDA; a shared-memory file on the simulated GPU), in the same
/// run. Each invocation does <see cref="PerThread"/> allocate+free pairs on each thread; the times are
/// per pair. Targets on the H100: p50 &lt;= 1 us for &lt;= 1 MiB on one thread, &lt;= 2 us on 8.
/// </summary>
public class PoolAllocationBenchmarks
{
    public const int PerThread = 64;

    private GpuSystem _gpus = null!;
    private GpuMemoryPool _pool = null!;

    [Params(4L << 10, 64L << 10, 1L << 20, 16L << 20, 64L << 20)]
    public long Bytes { get; set; }

    [Params(1, 8)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _gpus = GpuSystem.Open();
        Console.WriteLine($"// backend {_gpus.Backend}: {_gpus.SelectionReason}");
        _pool = new GpuMemoryPool(_gpus.Devices[0], new GpuPoolOptions { SlabBytes = 1L << 30, TrimInterval = null, FloorBytes = 0 });
        Pool(); // grow to the working set once: the steady state is what is measured
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        await _pool.DisposeAsync();
        _gpus.Dispose();
    }

    [Benchmark(OperationsPerInvoke = PerThread)]
    public void Pool() => OnThreads(() =>
    {
        // The fast path completes synchronously; GetResult does not block there.
        var block = _pool.AllocateAsync(Bytes).GetAwaiter().GetResult();
        _pool.Release(block, default);
    });

    [Benchmark(Baseline = true, OperationsPerInvoke = PerThread)]
    public void DeviceAllocator() => OnThreads(() => _gpus.Devices[0].Allocate(Bytes).Dispose());

    private void OnThreads(Action pair)
    {
        if (Threads == 1)
        {
            for (int i = 0; i < PerThread; i++)
            {
                pair();
            }

            return;
        }

        Parallel.For(0, Threads, new ParallelOptions { MaxDegreeOfParallelism = Threads }, _ =>
        {
            for (int i = 0; i < PerThread; i++)
            {
                pair();
            }
        });
    }
}
