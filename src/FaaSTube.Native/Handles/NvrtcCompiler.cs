using System.Runtime.InteropServices;
using System.Text;

namespace FaaSTube.Native.Handles;

/// <summary>Compiles CUDA C++ source with NVRTC.</summary>
internal static unsafe class NvrtcCompiler
{
    private const int NvrtcErrorCompilation = 6;

    /// <summary>The NVRTC version, e.g. (13, 0).</summary>
    public static (int Major, int Minor) Version()
    {
        CudaLibrary.ThrowIfNvrtcUnavailable();
        int major, minor;
        Check(Interop.Nvrtc.nvrtcVersion(&major, &minor), "nvrtcVersion");
        return (major, minor);
    }

    /// <summary>
    /// Compiles <paramref name="source"/>; returns CUBIN when <paramref name="cubin"/> (options must
    /// name a real architecture, <c>-arch=sm_XX</c>), otherwise PTX (NUL-terminated, as cuModuleLoadData wants).
    /// A compile error throws <see cref="CudaException"/> whose message holds the compiler log.
    /// </summary>
    public static byte[] Compile(string source, string name, IReadOnlyList<string> options, bool cubin)
    {
        CudaLibrary.ThrowIfNvrtcUnavailable();
        nint program;
        fixed (byte* src = NullTerminated(source))
        fixed (byte* nm = NullTerminated(name))
        {
            Check(Interop.Nvrtc.nvrtcCreateProgram(&program, src, nm, 0, null, null), "nvrtcCreateProgram");
        }

        try
        {
            var optionBytes = options.Select(NullTerminated).ToArray();
            var handles = optionBytes.Select(o => GCHandle.Alloc(o, GCHandleType.Pinned)).ToArray();
            try
            {
                var pointers = stackalloc byte*[Math.Max(1, handles.Length)];
                for (int i = 0; i < handles.Length; i++)
                {
                    pointers[i] = (byte*)handles[i].AddrOfPinnedObject();
                }

                int compile = Interop.Nvrtc.nvrtcCompileProgram(program, handles.Length, pointers);
                if (compile != 0)
                {
                    string log = GetLog(program);
                    throw new CudaException(
                        ErrorName(compile), compile == NvrtcErrorCompilation ? (int)CudaResult.ErrorInvalidSource : (int)CudaResult.ErrorUnknown,
                        $"compiling {name}: {log}", $"nvrtcCompileProgram({name}, {string.Join(' ', options)})");
                }
            }
            finally
            {
                foreach (var h in handles)
                {
                    h.Free();
                }
            }

            nuint size;
            byte[] image;
            if (cubin)
            {
                Check(Interop.Nvrtc.nvrtcGetCUBINSize(program, &size), "nvrtcGetCUBINSize");
                image = new byte[(int)size];
                fixed (byte* p = image)
                {
                    Check(Interop.Nvrtc.nvrtcGetCUBIN(program, p), "nvrtcGetCUBIN");
                }
            }
            else
            {
                Check(Interop.Nvrtc.nvrtcGetPTXSize(program, &size), "nvrtcGetPTXSize");
                image = new byte[(int)size];
                fixed (byte* p = image)
                {
                    Check(Interop.Nvrtc.nvrtcGetPTX(program, p), "nvrtcGetPTX");
                }
            }

            return image;
        }
        finally
        {
            Interop.Nvrtc.nvrtcDestroyProgram(&program);
        }
    }

    private static string GetLog(nint program)
    {
        nuint size;
        if (Interop.Nvrtc.nvrtcGetProgramLogSize(program, &size) != 0 || size <= 1)
        {
            return "(no log)";
        }

        var log = new byte[(int)size];
        fixed (byte* p = log)
        {
            Interop.Nvrtc.nvrtcGetProgramLog(program, p);
        }

        return Encoding.UTF8.GetString(log, 0, log.Length - 1).Trim();
    }

    private static string ErrorName(int result) =>
        Marshal.PtrToStringUTF8((nint)Interop.Nvrtc.nvrtcGetErrorString(result)) ?? $"NVRTC_ERROR_{result}";

    private static void Check(int result, string call)
    {
        if (result != 0)
        {
            throw new CudaException(ErrorName(result), (int)CudaResult.ErrorUnknown, "NVRTC call failed", call);
        }
    }

    private static byte[] NullTerminated(string s)
    {
        var bytes = new byte[Encoding.UTF8.GetByteCount(s) + 1];
        Encoding.UTF8.GetBytes(s, bytes);
        return bytes;
    }
}
