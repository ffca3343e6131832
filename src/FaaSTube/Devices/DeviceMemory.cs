namespace FaaSTube.Devices;

/// <summary>A range of a <see cref="DeviceBuffer"/>: what copies and kernels read and write.</summary>
public readonly struct DeviceMemory
{
    /// <summary>Creates a range, validating it against the buffer.</summary>
    /// <param name="buffer">The buffer.</param>
    /// <param name="offset">Byte offset into the buffer.</param>
    /// <param name="length">Length in bytes.</param>
    public DeviceMemory(DeviceBuffer buffer, long offset, long length)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        if (offset < 0 || length < 0 || offset > buffer.Length - length)
        {
            throw new ArgumentOutOfRangeException(
                nameof(offset), $"[{offset}, {offset}+{length}) is outside the buffer of {buffer.Length} bytes.");
        }

        Buffer = buffer;
        Offset = offset;
        Length = length;
    }

    /// <summary>The buffer the range lies in.</summary>
    public DeviceBuffer Buffer { get; }

    /// <summary>Byte offset into <see cref="Buffer"/>.</summary>
    public long Offset { get; }

    /// <summary>Length in bytes.</summary>
    public long Length { get; }

    /// <summary>The device that owns the memory.</summary>
    public GpuDevice Device => Buffer.Device;

    /// <summary>The device address of the first byte (for the caller's own kernels).</summary>
    public ulong Address => Buffer.Address + (ulong)Offset;

    /// <summary>A sub-range.</summary>
    /// <param name="offset">Offset within this range.</param>
    /// <param name="length">Length of the sub-range.</param>
    public DeviceMemory Slice(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Length - length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset}+{length}) is outside a range of {Length} bytes.");
        }

        return new DeviceMemory(Buffer, Offset + offset, length);
    }

    /// <summary>The whole buffer.</summary>
    /// <param name="buffer">The buffer.</param>
    public static implicit operator DeviceMemory(DeviceBuffer buffer) => new(buffer, 0, buffer.Length);
}
