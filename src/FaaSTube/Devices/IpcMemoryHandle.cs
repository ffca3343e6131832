using System.Buffers.Binary;

namespace FaaSTube.Devices;

/// <summary>
/// Names an allocation so that another process can open it (<see cref="GpuDevice.Import"/>): a CUDA
/// IPC memory handle, or the shared-memory name of a simulated allocation. It is plain bytes
/// (<see cref="Size"/> of them), safe to send over a socket; it grants nothing by itself on CUDA beyond
/// what the driver enforces, so send it only to processes that may read the data.
/// </summary>
public sealed class IpcMemoryHandle : IEquatable<IpcMemoryHandle>
{
    /// <summary>Bytes in the serialised form: backend (1), reserved (7), length (8), opaque handle (64).</summary>
    public const int Size = 80;

    private const int OpaqueSize = 64;
    private readonly byte[] _opaque;

    internal IpcMemoryHandle(GpuBackend backend, long length, ReadOnlySpan<byte> opaque)
    {
        if (opaque.Length != OpaqueSize)
        {
            throw new ArgumentException($"An IPC handle has {OpaqueSize} opaque bytes, not {opaque.Length}.", nameof(opaque));
        }

        Backend = backend;
        Length = length;
        _opaque = opaque.ToArray();
    }

    /// <summary>The backend that made the handle.</summary>
    public GpuBackend Backend { get; }

    /// <summary>Size of the allocation in bytes.</summary>
    public long Length { get; }

    internal ReadOnlySpan<byte> Opaque => _opaque;

    /// <summary>Writes the <see cref="Size"/>-byte form.</summary>
    /// <param name="destination">At least <see cref="Size"/> bytes.</param>
    public void WriteTo(Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, Size, nameof(destination));
        destination[..16].Clear();
        destination[0] = (byte)Backend;
        BinaryPrimitives.WriteInt64LittleEndian(destination[8..], Length);
        _opaque.CopyTo(destination[16..]);
    }

    /// <summary>Reads the form written by <see cref="WriteTo"/>; throws <see cref="FormatException"/> on anything else.</summary>
    /// <param name="source">At least <see cref="Size"/> bytes.</param>
    public static IpcMemoryHandle ReadFrom(ReadOnlySpan<byte> source)
    {
        if (source.Length < Size)
        {
            throw new FormatException($"An IPC memory handle has {Size} bytes; got {source.Length}.");
        }

        var backend = (GpuBackend)source[0];
        long length = BinaryPrimitives.ReadInt64LittleEndian(source[8..]);
        if (backend is not (GpuBackend.Cuda or GpuBackend.Simulated) || length <= 0 || source[1..8].IndexOfAnyExcept((byte)0) >= 0)
        {
            throw new FormatException("The bytes are not an IPC memory handle (bad backend, reserved bytes or length).");
        }

        return new IpcMemoryHandle(backend, length, source.Slice(16, OpaqueSize));
    }

    /// <summary>The handle as hex, for command lines and logs.</summary>
    public override string ToString()
    {
        Span<byte> bytes = stackalloc byte[Size];
        WriteTo(bytes);
        return Convert.ToHexString(bytes);
    }

    /// <summary>Parses the hex form of <see cref="ToString"/>.</summary>
    /// <param name="hex">The hex text.</param>
    public static IpcMemoryHandle Parse(string hex)
    {
        ArgumentNullException.ThrowIfNull(hex);
        return ReadFrom(Convert.FromHexString(hex));
    }

    /// <inheritdoc/>
    public bool Equals(IpcMemoryHandle? other) =>
        other is not null && other.Backend == Backend && other.Length == Length && other._opaque.AsSpan().SequenceEqual(_opaque);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => Equals(obj as IpcMemoryHandle);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Backend, Length, BinaryPrimitives.ReadInt64LittleEndian(_opaque));
}
