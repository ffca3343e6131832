namespace FaaSTube.Devices;

/// <summary>What a stream runs.</summary>
internal enum StreamOpKind
{
    HostToDevice,
    DeviceToHost,
    DeviceToDevice,
    Memset,
    FillPattern,
    Checksum,
}

/// <summary>
/// One unit of work for a backend: a chunk of a copy, a memset, or a kernel. Host pointers are
/// already pinned and device buffers already referenced by <see cref="GpuStream"/>.
/// </summary>
internal readonly record struct StreamOp(
    StreamOpKind Kind,
    nint Host,
    DeviceMemory Source,
    DeviceMemory Destination,
    long Length,
    byte Value = 0,
    ulong Seed = 0);
