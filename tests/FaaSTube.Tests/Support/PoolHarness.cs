using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Kernels;
using FaaSTube.Memory;

namespace FaaSTube.Tests.Support;

/// <summary>A pool on one simulated GPU with small slabs, no background trimming, and helpers to write and check block contents.</summary>
internal sealed class PoolHarness : IAsyncDisposable
{
    public const long MiB = 1 << 20;

    public PoolHarness(Action<GpuPoolOptions>? configure = null, long deviceMemory = 256 * MiB, GpuBackend backend = GpuBackend.Simulated)
    {
        Gpus = Support.Gpus.Open(backend, simulatedMemory: deviceMemory);
        Options = new GpuPoolOptions
        {
            SlabBytes = MiB,
            FloorBytes = 0,
            TrimInterval = null,
            ProactiveRestore = false,
            AllocationTimeout = TimeSpan.Zero,
            SpillDirectory = Directory.CreateTempSubdirectory("faastube-spill-").FullName,
        };
        configure?.Invoke(Options);
        Pool = new GpuMemoryPool(Gpus.Devices[0], Options, FaaSTube.Hosting.FaaSTubeServices.From(null, null, Clock));
        Stream = Gpus.Devices[0].CreateStream();
    }

    public VirtualClock Clock { get; } = new();

    public GpuSystem Gpus { get; }

    public GpuPoolOptions Options { get; }

    public GpuMemoryPool Pool { get; }

    public GpuStream Stream { get; }

    /// <summary>Writes the pattern of <paramref name="seed"/> into the block (on the GPU).</summary>
    public async Task WriteAsync(PoolBlock block, ulong seed)
    {
        using var use = await block.UseAsync();
        await Stream.FillPatternAsync(use.Memory, seed);
    }

    /// <summary>True when the block holds the pattern of <paramref name="seed"/> (checksum computed on the GPU).</summary>
    public async Task<bool> HoldsAsync(PoolBlock block, ulong seed)
    {
        using var use = await block.UseAsync();
        return await Stream.ChecksumAsync(use.Memory) == Expected(block.Length, seed);
    }

    /// <summary>The block's descriptor now (it is resident for the moment of the call).</summary>
    public static async Task<BlockDescriptor> DescriptorAsync(PoolBlock block)
    {
        using var use = await block.UseAsync();
        return use.Descriptor;
    }

    public static ulong Expected(long length, ulong seed)
    {
        var bytes = new byte[length];
        DataPattern.Fill(bytes, seed);
        return DataChecksum.Compute(bytes);
    }

    public async ValueTask DisposeAsync()
    {
        Stream.Dispose();
        await Pool.DisposeAsync();
        Gpus.Dispose();
        Directory.Delete(Options.SpillDirectory!, recursive: true);
    }
}
