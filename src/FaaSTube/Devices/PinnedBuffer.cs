using System.Buffers;
using System.Runtime.InteropServices;

namespace FaaSTube.Devices;

/// <summary>
/// Page-locked host memory that the GPU reaches by DMA at the link's full speed: allocated by the
/// device (<see cref="GpuDevice.AllocatePinned"/>) or the caller's memory registered with it
/// (<see cref="GpuDevice.RegisterHostMemory(nint, long)"/>). Its <see cref="MemoryManager{T}.Memory"/> can be passed to
/// any copy; copies from and to it need no staging.
/// </summary>
public sealed unsafe class PinnedBuffer : MemoryManager<byte>
{
    private readonly SafeHandle _owner;
    private readonly byte* _pointer;
    private readonly int _length;
    private int _unregistered;

    internal PinnedBuffer(GpuDevice device, SafeHandle owner, nint pointer, long length, bool registered)
    {
        if (length > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, "A pinned buffer holds at most 2 GiB - 1 bytes.");
        }

        Device = device;
        _owner = owner;
        _pointer = (byte*)pointer;
        _length = (int)length;
        IsRegistered = registered;
        PinnedRanges.Add(pointer, length);
    }

    /// <summary>The device the memory is pinned for (portable: every device can use it).</summary>
    public GpuDevice Device { get; }

    /// <summary>Size in bytes.</summary>
    public int Length => _length;

    /// <summary>True when the memory is the caller's, registered rather than allocated.</summary>
    public bool IsRegistered { get; }

    /// <summary>What keeps the memory pinned (the allocation, or the registration).</summary>
    internal SafeHandle Owner => _owner;

    /// <summary>The host address of the first byte.</summary>
    public nint Pointer => (nint)_pointer;

    /// <inheritdoc/>
    public override Span<byte> GetSpan()
    {
        ObjectDisposedException.ThrowIf(_owner.IsClosed, this);
        return new Span<byte>(_pointer, _length);
    }

    /// <inheritdoc/>
    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, _length);
        bool added = false;
        _owner.DangerousAddRef(ref added);
        return new MemoryHandle(_pointer + elementIndex, default, this);
    }

    /// <inheritdoc/>
    public override void Unpin() => _owner.DangerousRelease();

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (Interlocked.Exchange(ref _unregistered, 1) == 0)
        {
            PinnedRanges.Remove((nint)_pointer);
        }

        _owner.Dispose();
    }
}
