using System.Runtime.InteropServices;

namespace FaaSTube.Native;

internal static unsafe partial class Interop
{
    /// <summary>NVRTC: runtime compilation of CUDA C++ to PTX or CUBIN.</summary>
    internal static partial class Nvrtc
    {
        private const string Lib = CudaLibrary.NvrtcName;

        [LibraryImport(Lib)] internal static partial int nvrtcVersion(int* major, int* minor);
        [LibraryImport(Lib)] internal static partial byte* nvrtcGetErrorString(int result);
        [LibraryImport(Lib)]
        internal static partial int nvrtcCreateProgram(
            nint* program, byte* source, byte* name, int numHeaders, byte** headers, byte** includeNames);
        [LibraryImport(Lib)] internal static partial int nvrtcDestroyProgram(nint* program);
        [LibraryImport(Lib)] internal static partial int nvrtcCompileProgram(nint program, int numOptions, byte** options);
        [LibraryImport(Lib)] internal static partial int nvrtcGetProgramLogSize(nint program, nuint* size);
        [LibraryImport(Lib)] internal static partial int nvrtcGetProgramLog(nint program, byte* log);
        [LibraryImport(Lib)] internal static partial int nvrtcGetPTXSize(nint program, nuint* size);
        [LibraryImport(Lib)] internal static partial int nvrtcGetPTX(nint program, byte* ptx);
        [LibraryImport(Lib)] internal static partial int nvrtcGetCUBINSize(nint program, nuint* size);
        [LibraryImport(Lib)] internal static partial int nvrtcGetCUBIN(nint program, byte* cubin);
    }
}
