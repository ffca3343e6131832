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
