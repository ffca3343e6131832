using System.Runtime.InteropServices;

namespace FaaSTube.Devices;

/// <summary>
/// Device memory: allocated on a <see cref="GpuDevice"/>, or imported from another process with
/// <see cref="GpuDevice.Import"/>. Disposing frees (or unmaps) it once no copy is using it; using it
/// after that throws <see cref="ObjectDisposedException"/>. An import of a handle this same process
/// exported is an alias of the local memory (<see cref="IsAlias"/>): disposing it frees nothing, and
/// the memory stays allocated until the original and every alias are disposed.
/// </summary>
public sealed class DeviceBuffer : IDisposable
{
    private readonly SafeHandle _memory;
    private IpcMemoryHandle? _exportedAs;

    internal DeviceBuffer(GpuDevice device, SafeHandle memory, ulong address, long length, bool imported)
    {
        Device = device;
        _memory = memory;
        Address = address;
        Length = length;
        IsImported = imported;
    }

    /// <summary>The device that holds the memory.</summary>
    public GpuDevice Device { get; }

    /// <summary>The device address of the first byte.</summary>
    public ulong Address { get; }

    /// <summary>Size in bytes.</summary>
    public long Length { get; }

    /// <summary>True when the memory belongs to another process and was opened from its IPC handle.</summary>
    public bool IsImported { get; }

    /// <summary>True when imported from a handle this process exported: the same memory as the exported buffer, at the same address.</summary>
    public bool IsAlias => _memory is AliasHandle;

    /// <summary>True once disposed.</summary>
    public bool IsDisposed => _memory.IsClosed;

    /// <summary>A range of this buffer.</summary>
    /// <param name="offset">Byte offset.</param>
    /// <param name="length">Length in bytes.</param>
    public DeviceMemory Slice(long offset, long length) => new(this, offset, length);

    /// <summary>Frees the memory (or closes the mapping) once in-flight work on it has completed.</summary>
    public void Dispose()
    {
        if (Volatile.Read(ref _exportedAs) is { } handle)
        {
            ExportRegistry.Remove(handle, this);
        }

        _memory.Dispose();
    }

    internal void MarkExported(IpcMemoryHandle handle) => Volatile.Write(ref _exportedAs, handle);

    /// <summary>Keeps the memory alive for an operation; throws <see cref="ObjectDisposedException"/> when already disposed.</summary>
    internal void AddRef()
    {
        bool added = false;
        try
        {
            _memory.DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
            throw new ObjectDisposedException(nameof(DeviceBuffer), $"The device buffer of {Length} bytes on {Device} was disposed.");
        }
    }

    internal void Release() => _memory.DangerousRelease();

    internal SafeHandle Handle => _memory;

    /// <inheritdoc/>
    public override string ToString() => $"{(IsAlias ? "aliased " : IsImported ? "imported " : "")}buffer of {Length} bytes at 0x{Address:x} on {Device}";
}
