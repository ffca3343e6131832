namespace FaaSTube.Devices;

/// <summary>Free and total device memory, in bytes, as the device reports them now.</summary>
/// <param name="Free">Bytes the device can still allocate.</param>
/// <param name="Total">Bytes of memory on the device.</param>
public readonly record struct GpuMemoryInfo(long Free, long Total);
