using Microsoft.Extensions.Logging;

namespace FaaSTube.Memory;

/// <summary>What a <see cref="GpuMemoryPool"/> logs: growth, slabs going back, evictions and restores, a failed trim.</summary>
internal static partial class PoolLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Pool of GPU {Device} took slab {Slab} ({Bytes} bytes) for partition '{Partition}'; {Reserved} bytes reserved")]
    public static partial void SlabAdded(ILogger logger, int device, int slab, long bytes, string partition, long reserved);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Pool of GPU {Device} gave slab {Slab} ({Bytes} bytes) back to the device; {Reserved} bytes reserved")]
    public static partial void SlabFreed(ILogger logger, int device, int slab, long bytes, long reserved);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "Pool of GPU {Device} evicted block {Block} ({Bytes} bytes, partition '{Partition}') to the spill store")]
    public static partial void Evicted(ILogger logger, int device, long block, long bytes, string partition);

    [LoggerMessage(EventId = 4, Level = LogLevel.Debug, Message = "Pool of GPU {Device} restored block {Block} ({Bytes} bytes) to the device")]
    public static partial void Restored(ILogger logger, int device, long block, long bytes);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "The background trim of the pool of GPU {Device} failed; it runs again at the next interval")]
    public static partial void TrimFailed(ILogger logger, Exception exception, int device);
}
