using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace FaaSTube.Native;

/// <summary>
/// A CUDA driver API or NVRTC call failed. Carries the result code, its name and description
/// (from the driver when it is loaded) and the text of the failing call.
/// </summary>
public sealed class CudaException : FaaSTubeException
{
    /// <summary>Creates the exception for a failed call.</summary>
    /// <param name="result">The driver's result code.</param>
    /// <param name="call">The text of the failing call, as written at the call site.</param>
    public CudaException(CudaResult result, string call)
        : base(FaaSTubeErrorCode.CudaFailed, FormatMessage(result, call))
    {
        Result = result;
        Call = call;
        ErrorName = NameOf(result);
    }

    internal CudaException(string errorName, int code, string description, string call)
        : base(FaaSTubeErrorCode.CudaFailed, $"{call} failed: {errorName} ({code}): {description}")
    {
        Result = (CudaResult)code;
        Call = call;
        ErrorName = errorName;
    }

    /// <summary>The result code returned by the driver.</summary>
    public CudaResult Result { get; }

    /// <summary>The error's name as the driver spells it, e.g. <c>CUDA_ERROR_OUT_OF_MEMORY</c>.</summary>
    public string ErrorName { get; }

    /// <summary>The text of the call that failed.</summary>
    public string Call { get; }

    /// <summary>Throws a <see cref="CudaException"/> when <paramref name="result"/> is not success.</summary>
    /// <param name="result">The result of a driver call.</param>
    /// <param name="call">Filled in by the compiler with the call's text.</param>
    public static void ThrowIfFailed(CudaResult result, [CallerArgumentExpression(nameof(result))] string call = "")
    {
        if (result != CudaResult.Success)
        {
            Throw(result, call);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Throw(CudaResult result, string call) => throw new CudaException(result, call);

    private static string FormatMessage(CudaResult result, string call) =>
        $"{call} failed: {NameOf(result)} ({(int)result}): {DescriptionOf(result)}";

    /// <summary>The driver's name for a code (<c>cuGetErrorName</c>), or one derived from the enum when the driver is not loaded.</summary>
    internal static unsafe string NameOf(CudaResult result)
    {
        if (CudaLibrary.IsDriverLoaded)
        {
            byte* name;
            if (Interop.Cuda.cuGetErrorName(result, &name) == CudaResult.Success && name != null)
            {
                return Marshal.PtrToStringUTF8((nint)name) ?? result.ToString();
            }
        }

        return Enum.IsDefined(result) ? ToDriverName(result.ToString()) : $"CUDA_ERROR_{(int)result}";
    }

    private static unsafe string DescriptionOf(CudaResult result)
    {
        if (CudaLibrary.IsDriverLoaded)
        {
            byte* text;
            if (Interop.Cuda.cuGetErrorString(result, &text) == CudaResult.Success && text != null)
            {
                return Marshal.PtrToStringUTF8((nint)text) ?? "unknown error";
            }
        }

        return "no description (the CUDA driver is not loaded)";
    }

    /// <summary>ErrorOutOfMemory -> CUDA_ERROR_OUT_OF_MEMORY.</summary>
    private static string ToDriverName(string enumName)
    {
        if (enumName == nameof(CudaResult.Success))
        {
            return "CUDA_SUCCESS";
        }

        var sb = new StringBuilder("CUDA_");
        for (int i = 0; i < enumName.Length; i++)
        {
            char c = enumName[i];
            if (i > 0 && char.IsUpper(c))
            {
                sb.Append('_');
            }

            sb.Append(char.ToUpperInvariant(c));
        }

        return sb.ToString();
    }
}
