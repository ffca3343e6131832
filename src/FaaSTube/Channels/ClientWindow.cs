using System.Runtime.InteropServices;
using FaaSTube.Channels.Transport;
using FaaSTube.Native;
using Microsoft.Win32.SafeHandles;
using FaaSTube.Platform;

namespace FaaSTube.Channels;

/// <summary>
/// The client's window for host data: anonymous shared memory (<see cref="SealedSharedMemory"/>) that the
/// node maps and registers (pins) once, so host data crosses between the processes by DMA to and
/// from it, never over the socket. The client cuts it into slots (<see cref="Client.WindowSlots"/>).
/// </summary>
internal sealed class ClientWindow : IDisposable
{
    private readonly SealedSharedMemory _shared;

    public ClientWindow(int bytes)
    {
        if (bytes < 2 * 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "A window holds at least two pages (8 KiB).");
        }

        _shared = SealedSharedMemory.Create(bytes);
    }

    public int Length => _shared.Length;

    /// <summary>The descriptor the node gets with Hello.</summary>
    public SafeFileHandle Descriptor => _shared.Descriptor;

    /// <summary>
    /// The whole window. Its span throws <see cref="ObjectDisposedException"/> once the window is
    /// disposed; a pin of it holds the mapping, so a dispose racing a copy through a pin waits for it.
    /// </summary>
    public Memory<byte> Memory => _shared.Memory;

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
