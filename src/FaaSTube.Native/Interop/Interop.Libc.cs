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
    }
}
