using System.Runtime.InteropServices;
using FaaSTube.Channels.Transport;
using FaaSTube.Native;
using Microsoft.Win32.SafeHandles;

namespace FaaSTube.Channels;

/// <summary>
/// The client's window for host data: anonymous shared memory (<see cref="SharedWindow"/>) that the
/// node maps and registers (pins) once, so host data crosses between the processes by DMA to and
/// from it, never over the socket. Two halves: the client fills one while the node moves the other.
/// </summary>
internal sealed class ClientWindow : IDisposable
{
    private readonly SharedWindow _shared;

    public ClientWindow(int bytes)
    {
        if (bytes < 2 * 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "A window holds at least two pages (8 KiB).");
        }

        _shared = SharedWindow.Create(bytes);
        HalfBytes = bytes / 2 & ~4095;
    }

    public int Length => _shared.Length;

    /// <summary>Bytes per half (page-aligned).</summary>
    public int HalfBytes { get; }

    /// <summary>The descriptor the node gets with Hello.</summary>
    public SafeFileHandle Descriptor => _shared.Descriptor;

    public Memory<byte> Half(int index) => _shared.Memory.Slice(index * HalfBytes, HalfBytes);

    /// <summary>
    /// Copies into a half while holding the mapping: a dispose racing the copy (the client closed
    /// under its own Put) waits for it instead of unmapping under it; after the dispose this throws
    /// <see cref="ObjectDisposedException"/>.
    /// </summary>
    public unsafe void CopyIn(int half, ReadOnlySpan<byte> source)
    {
        using var pin = Half(half).Pin();
        source.CopyTo(new Span<byte>(pin.Pointer, HalfBytes));
    }

    /// <summary>Copies out of a half while holding the mapping (see <see cref="CopyIn"/>).</summary>
    public unsafe void CopyOut(int half, Span<byte> destination)
    {
        using var pin = Half(half).Pin();
        new ReadOnlySpan<byte>(pin.Pointer, destination.Length).CopyTo(destination);
    }

    /// <summary>A duplicate of the descriptor for a node in this process (the node owns and closes it).</summary>
    public SafeFileHandle Duplicate()
    {
        int fd = Interop.Libc.fcntl((int)_shared.Descriptor.DangerousGetHandle(), Interop.Libc.F_DUPFD_CLOEXEC, 0);
        return fd >= 0
            ? new SafeFileHandle(fd, ownsHandle: true)
            : throw new IOException($"fcntl(F_DUPFD_CLOEXEC) failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}.");
    }

    public void Dispose() => ((IDisposable)_shared).Dispose();
}
