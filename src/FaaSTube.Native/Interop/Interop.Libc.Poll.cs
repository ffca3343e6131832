using System.Runtime.InteropServices;

namespace FaaSTube.Native;

internal static partial class Interop
{
    /// <summary>poll(2): how a UCX progress thread sleeps on its worker's event descriptor.</summary>
    internal static unsafe partial class Libc
    {
        internal const short POLLIN = 0x001;

        /// <summary>struct pollfd.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct PollFd
        {
            public int Fd;
            public short Events;
            public short ReturnedEvents;
        }

        /// <summary>gettid(2): the kernel's id of the calling thread (/proc/self/task/ID).</summary>
        [LibraryImport(Lib)] internal static partial int gettid();

        [LibraryImport(Lib, SetLastError = true)] internal static partial int poll(PollFd* fds, nuint count, int timeoutMilliseconds);
    }
}
