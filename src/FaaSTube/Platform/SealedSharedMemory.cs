using System.Buffers;
using System.Runtime.InteropServices;
using FaaSTube.Native;
using Microsoft.Win32.SafeHandles;

namespace FaaSTube.Platform;

/// <summary>
/// Shared memory between one client and the node, passed as a capability, never by name: an
/// anonymous file (<c>memfd_create</c>) that the client creates, sizes, seals against shrinking and
/// growing, maps, and hands to the node over the Unix socket (<c>src/FaaSTube/Channels/Transport/UnixRights.cs</c>). Nothing is
/// in <c>/dev/shm</c>, so no other process can find, open, replace or symlink it, and it vanishes
/// when the last holder closes it (a killed client leaves nothing behind). The node adopts the
/// descriptor only after checking its seals and size (<see cref="Adopt"/>): a client cannot
/// truncate memory the node copies through, so a copy can never fault. It backs a client's window
/// for host data (src/FaaSTube/Channels/ClientWindow.cs, NodeWindow.cs) and a control ring
/// (src/FaaSTube/Channels/Transport/ControlRing.cs).
/// </summary>
internal sealed unsafe class SealedSharedMemory : MemoryManager<byte>
{
    /// <summary>The seals the memory must carry before the node maps it.</summary>
    internal const int RequiredSeals = Interop.Libc.F_SEAL_SHRINK | Interop.Libc.F_SEAL_GROW;

    private readonly SafeFileHandle? _fd; // the client's; the node closes its copy once mapped
    private readonly Mapping _mapping;

    private SealedSharedMemory(SafeFileHandle? fd, Mapping mapping, int length)
    {
        _fd = fd;
        _mapping = mapping;
        Length = length;
    }

    /// <summary>Bytes in the memory.</summary>
    public int Length { get; }

    /// <summary>The first byte (valid while this is not disposed).</summary>
    public nint Pointer => _mapping.DangerousGetHandle();

    /// <summary>The descriptor (to send it; this keeps owning it).</summary>
    public SafeFileHandle Descriptor => _fd ?? throw new InvalidOperationException("Adopted shared memory keeps no descriptor: it was closed once mapped.");

    /// <summary>The client's side: new shared memory of <paramref name="bytes"/>, sealed against shrinking and growing, mapped read-write.</summary>
    public static SealedSharedMemory Create(int bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        int raw = Interop.Libc.memfd_create("faastube-shm", Interop.Libc.MFD_CLOEXEC | Interop.Libc.MFD_ALLOW_SEALING);
        if (raw < 0)
        {
            throw Failure("memfd_create");
        }

        var fd = new SafeFileHandle(raw, ownsHandle: true);
        try
        {
            if (Interop.Libc.ftruncate(raw, bytes) != 0)
            {
                throw Failure("ftruncate");
            }

            if (Interop.Libc.fcntl(raw, Interop.Libc.F_ADD_SEALS, RequiredSeals | Interop.Libc.F_SEAL_SEAL) != 0)
            {
                throw Failure("fcntl(F_ADD_SEALS)");
            }

            return new SealedSharedMemory(fd, Mapping.Map(raw, bytes), bytes);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The node's side: takes ownership of a descriptor a client sent and maps it, only if it is
    /// anonymous shared memory (only such files carry seals), sealed against shrinking and growing,
    /// and exactly <paramref name="bytes"/> long. Anything else (a regular file, a directory, a
    /// FIFO, a socket, an unsealed or resized memfd) is refused with <see cref="SharedMemoryRejectedException"/>
    /// and the descriptor is closed. Once mapped, the descriptor is closed too: the mapping holds the memory.
    /// </summary>
    public static SealedSharedMemory Adopt(SafeFileHandle fd, long bytes)
    {
        try
        {
            if (bytes <= 0 || bytes > int.MaxValue)
            {
                throw new SharedMemoryRejectedException($"Shared memory of {bytes} bytes: it must hold 1 byte to 2 GiB.");
            }

            int raw = (int)fd.DangerousGetHandle();
            int seals = Interop.Libc.fcntl(raw, Interop.Libc.F_GET_SEALS, 0);
            if (seals < 0)
            {
                throw new SharedMemoryRejectedException("The descriptor is not anonymous shared memory (memfd_create with MFD_ALLOW_SEALING).");
            }

            if ((seals & RequiredSeals) != RequiredSeals)
            {
                throw new SharedMemoryRejectedException("The shared memory must be sealed against shrinking and growing (F_SEAL_SHRINK | F_SEAL_GROW).");
            }

            long size = Interop.Libc.lseek(raw, 0, Interop.Libc.SEEK_END);
            if (size != bytes)
            {
                throw new SharedMemoryRejectedException($"The shared memory holds {size} bytes; the client said {bytes}.");
            }

            var mapping = Mapping.Map(raw, (int)bytes);
            fd.Dispose(); // the mapping keeps the memory: one descriptor fewer per session
            return new SealedSharedMemory(null, mapping, (int)bytes);
        }
        catch (IOException e)
        {
            fd.Dispose();
            throw new SharedMemoryRejectedException($"The shared memory cannot be mapped: {e.Message}");
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public override Span<byte> GetSpan()
    {
        ObjectDisposedException.ThrowIf(_mapping.IsClosed, this);
        return new Span<byte>((void*)_mapping.DangerousGetHandle(), Length);
    }

    /// <inheritdoc/>
    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, Length);
        bool added = false;
        _mapping.DangerousAddRef(ref added);
        return new MemoryHandle((byte*)_mapping.DangerousGetHandle() + elementIndex, default, this);
    }

    /// <inheritdoc/>
    public override void Unpin() => _mapping.DangerousRelease();

    /// <summary>Holds the mapping alive (a registration of it, a copy through it) until the returned handle's release.</summary>
    public SafeHandle KeepAlive()
    {
        bool added = false;
        _mapping.DangerousAddRef(ref added);
        return new Reference(_mapping);
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        _mapping.Dispose(); // unmapped when the last holder (pin, registration) lets go
        _fd?.Dispose();
    }

    private static IOException Failure(string call) =>
        new($"{call} failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}.");

    /// <summary>The mapping: munmap when the last reference goes.</summary>
    private sealed class Mapping : SafeHandle
    {
        private nuint _length;

        private Mapping()
            : base(0, ownsHandle: true)
        {
        }

        public override bool IsInvalid => handle == 0;

        public static Mapping Map(int fd, int bytes)
        {
            nint address = Interop.Libc.mmap(0, (nuint)bytes, Interop.Libc.PROT_READ | Interop.Libc.PROT_WRITE, Interop.Libc.MAP_SHARED, fd, 0);
            if (address == -1)
            {
                throw Failure("mmap");
            }

            var mapping = new Mapping { _length = (nuint)bytes };
            mapping.SetHandle(address);
            return mapping;
        }

        protected override bool ReleaseHandle() => Interop.Libc.munmap(handle, _length) == 0;
    }

    /// <summary>One reference on the mapping, released once.</summary>
    private sealed class Reference(Mapping mapping) : SafeHandle(1, ownsHandle: true)
    {
        public override bool IsInvalid => false;

        protected override bool ReleaseHandle()
        {
            mapping.DangerousRelease();
            return true;
        }
    }
}
