using System.Runtime.InteropServices;

namespace FaaSTube.Native;

internal static partial class Interop
{
    /// <summary>
    /// Anonymous shared memory passed as a capability (Linux): memfd_create(2), seals (fcntl(2)
    /// F_ADD_SEALS / F_GET_SEALS), mmap(2), and file descriptors sent over a Unix socket with
    /// SCM_RIGHTS (sendmsg(2) / recvmsg(2), x86_64 and aarch64 LP64 layouts).
    /// </summary>
    internal static partial class Libc
    {
        [LibraryImport(Lib, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int memfd_create(string name, uint flags);

        [LibraryImport(Lib, SetLastError = true)] internal static partial int ftruncate(int fd, long length);

        [LibraryImport(Lib, SetLastError = true)] internal static partial long lseek(int fd, long offset, int whence);

        [LibraryImport(Lib, SetLastError = true)] internal static partial int fcntl(int fd, int command, int argument);

        [LibraryImport(Lib, SetLastError = true)] internal static partial nint mmap(nint address, nuint length, int protection, int flags, int fd, long offset);

        [LibraryImport(Lib, SetLastError = true)] internal static partial int munmap(nint address, nuint length);

        [LibraryImport(Lib, SetLastError = true)] internal static partial int close(int fd);

        [LibraryImport(Lib, SetLastError = true)] internal static unsafe partial nint sendmsg(nint socket, MessageHeader* message, int flags);

        [LibraryImport(Lib, SetLastError = true)] internal static unsafe partial nint recvmsg(nint socket, MessageHeader* message, int flags);

        internal const uint MFD_CLOEXEC = 0x1;
        internal const uint MFD_ALLOW_SEALING = 0x2;
        internal const int F_DUPFD_CLOEXEC = 1030;
        internal const int F_ADD_SEALS = 1033;
        internal const int F_GET_SEALS = 1034;
        internal const int F_SEAL_SEAL = 0x1;
        internal const int F_SEAL_SHRINK = 0x2;
        internal const int F_SEAL_GROW = 0x4;
        internal const int F_SEAL_WRITE = 0x8;
        internal const int SEEK_END = 2;
        internal const int PROT_READ = 0x1;
        internal const int PROT_WRITE = 0x2;
        internal const int MAP_SHARED = 0x1;
        internal const int SOL_SOCKET = 1;
        internal const int SCM_RIGHTS = 1;
        internal const int MSG_CTRUNC = 0x8;
        internal const int MSG_DONTWAIT = 0x40;
        internal const int MSG_NOSIGNAL = 0x4000;
        internal const int MSG_CMSG_CLOEXEC = 0x40000000;
        internal const int EAGAIN = 11;

        /// <summary>struct iovec.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal unsafe struct IoVector
        {
            public void* Base;
            public nuint Length;
        }

        /// <summary>struct msghdr (LP64).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal unsafe struct MessageHeader
        {
            public void* Name;
            public uint NameLength;
            public IoVector* Vectors;
            public nuint VectorCount;
            public void* Control;
            public nuint ControlLength;
            public int Flags;
        }

        /// <summary>struct cmsghdr (LP64): 16 bytes, then the data, aligned to 8.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct ControlHeader
        {
            public nuint Length;
            public int Level;
            public int Type;
        }

        /// <summary>CMSG_LEN for <paramref name="dataBytes"/>: the header and the data, unpadded.</summary>
        internal static int ControlLength(int dataBytes) => 16 + dataBytes;

        /// <summary>CMSG_SPACE for <paramref name="dataBytes"/>: the header and the data padded to 8.</summary>
        internal static int ControlSpace(int dataBytes) => 16 + ((dataBytes + 7) & ~7);
    }
}
