using System.Runtime.InteropServices;

namespace FaaSTube.Native;

internal static partial class Interop
{
    /// <summary>The few libc calls the library needs (Linux).</summary>
    internal static partial class Libc
    {
        private const string Lib = "libc";

        /// <summary>kill(2); with signal 0 it only checks that the process exists.</summary>
        [LibraryImport(Lib, SetLastError = true)] internal static partial int kill(int pid, int signal);

        [LibraryImport(Lib)] internal static partial uint getuid();

        /// <summary>prctl(2) with one argument (the others 0).</summary>
        [LibraryImport(Lib, EntryPoint = "prctl", SetLastError = true)] internal static partial int prctl(int option, nuint argument, nuint unused2 = 0, nuint unused3 = 0, nuint unused4 = 0);

        /// <summary>prctl option: whether the process may dump core and be ptraced by its user's other processes (0: not).</summary>
        internal const int PR_SET_DUMPABLE = 4;

        /// <summary>struct rlimit (Linux, 64-bit: two rlim_t).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct RLimit
        {
            /// <summary>The soft limit, the one enforced.</summary>
            public ulong Current;

            /// <summary>The ceiling the soft limit may be raised to (lowered for good without CAP_SYS_RESOURCE).</summary>
            public ulong Maximum;
        }

        /// <summary>getrlimit(2).</summary>
        [LibraryImport(Lib, SetLastError = true)] internal static partial int getrlimit(int resource, out RLimit limit);

        /// <summary>setrlimit(2).</summary>
        [LibraryImport(Lib, SetLastError = true)] internal static partial int setrlimit(int resource, in RLimit limit);

        /// <summary>
        /// The resource that bounds a process's data (Linux: its private writable mappings, the heap
        /// and anonymous mmap included, not shared mappings, read-only or PROT_NONE reservations, or the main stack).
        /// </summary>
        internal const int RLIMIT_DATA = 2;

        /// <summary>rlim_t's "no limit".</summary>
        internal const ulong RLIM_INFINITY = ulong.MaxValue;

        /// <summary>waitid(2) for one child (idtype P_PID); <paramref name="siginfo"/> must hold 128 bytes.</summary>
        [LibraryImport(Lib, SetLastError = true)] internal static partial int waitid(int idtype, int id, byte[] siginfo, int options);

        internal const int P_PID = 1;
        internal const int WSTOPPED = 2;
        internal const int WNOWAIT = 0x01000000;
        internal const int EINTR = 4;
        internal const int SIGTERM = 15;
        internal const int SIGCONT = 18;
        internal const int SIGSTOP = 19;
    }
}
