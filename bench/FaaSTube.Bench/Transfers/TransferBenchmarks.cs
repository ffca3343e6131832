using BenchmarkDotNet.Attributes;
using FaaSTube.Devices;
using FaaSTube.Devices.Cuda;
using FaaSTube.Native;
using FaaSTube.Transfers;

namespace FaaSTube.Bench.Transfers;

/// <summary>Direction of a host transfer.</summary>
public enum Direction
{
    /// <summary>Host to GPU.</summary>
    H2D,
    /// <summary>GPU to host.</summary>
    D2H,
}

/// <summary>
/// Host &lt;-&gt; GPU bandwidth through the transfer engine, 1 MiB - 1 GiB: pageable byte[] through the
/// staged pipeline and pinned caller buffers straight to DMA, against the plain copy from the same
/// pageable buffer (cuMemcpyHtoD/DtoH on CUDA; the device layer's stream copy on the simulated GPU),
/// in the same run. Targets on the H100: pipeline &gt;= 45 GB/s for &gt;= 64 MiB, pinned &gt;= 53 GB/s.
/// Sizes: FAASTUBE_BENCH_SIZES (MiB, comma-separated).
/// </summary>
[MovesBytes]
public class TransferBandwidthBenchmarks
{
    private GpuSystem _gpus = null!;
    private TransferEngine _engine = null!;
    private DeviceBuffer _device = null!;
    private PinnedBuffer _pinned = null!;
    private byte[] _pageable = null!;
    private GpuStream _stream = null!;

    [ParamsSource(nameof(Sizes))]
    public long Bytes { get; set; }

    [ParamsAllValues]
    public Direction Direction { get; set; }

    public static IEnumerable<long> Sizes() =>
        (Environment.GetEnvironmentVariable("FAASTUBE_BENCH_SIZES") ?? "1,16,64,256,1024")
        .Split(',').Select(s => long.Parse(s, System.Globalization.CultureInfo.InvariantCulture) << 20);

    [GlobalSetup]
    public void Setup()
    {
        _gpus = GpuSystem.Open();
        Console.WriteLine($"// backend {_gpus.Backend}: {_gpus.SelectionReason}");
        _engine = new TransferEngine(_gpus.Devices[0]);
        _device = _gpus.Devices[0].Allocate(Bytes);
        _pinned = _gpus.Devices[0].AllocatePinned(Math.Min(Bytes, int.MaxValue));
        _pageable = GC.AllocateUninitializedArray<byte>((int)Bytes);
        Random.Shared.NextBytes(_pageable);
        _stream = _gpus.Devices[0].CreateStream();
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        _stream.Dispose();
        await _engine.DisposeAsync();
        _device.Dispose();
        ((IDisposable)_pinned).Dispose();
        _gpus.Dispose();
    }

    /// <summary>Pageable memory through pinned staging, chunked and pipelined.</summary>
    [Benchmark]
    public async Task Pipelined() => _ = Direction == Direction.H2D
        ? await _engine.ToDeviceAsync(_pageable, _device)
        : await _engine.ToHostAsync(_device, _pageable.AsMemory());

    /// <summary>A pinned caller buffer: chunked DMA, no staging copy.</summary>
    [Benchmark]
    public async Task PinnedCaller() => _ = Direction == Direction.H2D
        ? await _engine.ToDeviceAsync(_pinned.Memory, _device)
        : await _engine.ToHostAsync(_device, _pinned.Memory);

    /// <summary>The plain copy from the same pageable buffer.</summary>
    [Benchmark(Baseline = true)]
    public async Task PlainCopy()
    {
        if (_gpus.Backend == GpuBackend.Cuda)
        {
            PlainCuda();
            return;
        }

        await (Direction == Direction.H2D ? _stream.CopyAsync(_pageable, _device) : _stream.CopyAsync(_device, _pageable.AsMemory()));
    }

    private unsafe void PlainCuda()
    {
        using var scope = ((CudaGpuDevice)_gpus.Devices[0]).Context.Enter();
        fixed (byte* host = _pageable)
        {
            CudaException.ThrowIfFailed(Direction == Direction.H2D
                ? Interop.Cuda.cuMemcpyHtoD(_device.Address, host, (nuint)Bytes)
                : Interop.Cuda.cuMemcpyDtoH(host, _device.Address, (nuint)Bytes));
        }
    }
}

/// <summary>What the engine benchmarks share: a GPU, an engine, a device buffer, a pageable source, a stream for baselines.</summary>
public abstract class EngineBenchmark
{
    private protected GpuSystem Gpus { get; private set; } = null!;
    private protected TransferEngine Engine { get; private set; } = null!;
    private protected DeviceBuffer Device { get; private set; } = null!;
    private protected GpuStream Stream { get; private set; } = null!;
    private protected byte[] Pageable { get; private set; } = null!;

    private protected abstract long Length { get; }

    private protected virtual TransferEngineOptions EngineOptions => new();

    [GlobalSetup]
    public void Setup()
    {
        Gpus = GpuSystem.Open();
        Engine = new TransferEngine(Gpus.Devices[0], EngineOptions);
        Device = Gpus.Devices[0].Allocate(Length);
        Stream = Gpus.Devices[0].CreateStream();
        Pageable = new byte[Length];
        Random.Shared.NextBytes(Pageable);
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        Stream.Dispose();
        await Engine.DisposeAsync();
        Device.Dispose();
        Gpus.Dispose();
    }
}

/// <summary>Which chunk size is best: 256 MiB pageable host -> GPU through the engine, by chunk size.</summary>
[MovesBytes]
public class ChunkSizeBenchmarks : EngineBenchmark
{
    [Params(512 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20)]
    public int ChunkBytes { get; set; }

    [Params(256L << 20)]
    public long Bytes { get; set; }

    private protected override long Length => Bytes;

    private protected override TransferEngineOptions EngineOptions =>
        new() { ChunkBytes = ChunkBytes, StagingBytes = Math.Max(64L << 20, 32L * ChunkBytes) };

    [Benchmark]
    public async Task Pipelined() => await Engine.ToDeviceAsync(Pageable, Device);
}

/// <summary>A 64 KiB transfer through the scheduler against a plain stream copy: the engine's fixed overhead (target &lt;= 10 us).</summary>
public class SmallTransferBenchmarks : EngineBenchmark
{
    private protected override long Length => 64 << 10;

    [Benchmark]
    public async Task ThroughScheduler() => await Engine.ToDeviceAsync(Pageable, Device);

    [Benchmark(Baseline = true)]
    public async Task PlainStreamCopy() => await Stream.CopyAsync(Pageable, Device);
}
