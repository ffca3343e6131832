using System.Runtime.InteropServices;

namespace FaaSTube.Native;

internal static partial class Interop
{
    /// <summary>sigaction(2): how the runtime's handlers of the hardware-fault signals are kept when UCX loads (<see cref="UcxLibrary"/>).</summary>
    internal static unsafe partial class Libc
    {
        internal const int SIGILL = 4;
        internal const int SIGBUS = 7;
        internal const int SIGFPE = 8;
        internal const int SIGSEGV = 11;

        /// <summary>
        /// Room for one <c>struct sigaction</c>, kept opaque: it is only read with sigaction and
        /// handed back to it unchanged (glibc's is 152 bytes on x86-64 and aarch64).
        /// </summary>
        internal const int SigactionBytes = 256;

        [LibraryImport(Lib, SetLastError = true)] internal static partial int sigaction(int signal, void* action, void* oldAction);

        /// <summary>setenv(3) in the process's native environment (what libucs reads as it loads; <see cref="Environment.SetEnvironmentVariable(string, string)"/> does not reach it).</summary>
        [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8, SetLastError = true)] internal static partial int setenv(string name, string value, int overwrite);
    }
}
