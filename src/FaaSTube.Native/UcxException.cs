using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace FaaSTube.Native;

/// <summary>
/// A UCX call or operation failed. Carries the <c>ucs_status_t</c>, its name as UCX spells it
/// (e.g. <c>UCS_ERR_CONNECTION_RESET</c>), UCX's description (<c>ucs_status_string</c>, when
/// libucs is loaded) and the text of the failing call.
/// </summary>
public sealed class UcxException : FaaSTubeException
{
    /// <summary>Creates the exception for a failed call or operation.</summary>
    /// <param name="status">The status UCX returned or completed the operation with.</param>
    /// <param name="call">The text of the failing call, or what the operation was.</param>
    public UcxException(UcsStatus status, string call)
        : base(FaaSTubeErrorCode.UcxFailed, FormatMessage(status, call))
    {
        Status = status;
        StatusName = NameOf(status);
        Call = call;
    }

    /// <summary>The status code.</summary>
    public UcsStatus Status { get; }

    /// <summary>The status's name as UCX spells it, e.g. <c>UCS_ERR_CANCELED</c>.</summary>
    public string StatusName { get; }

    /// <summary>The text of the call (or the operation) that failed.</summary>
    public string Call { get; }

    /// <summary>Throws a <see cref="UcxException"/> when <paramref name="status"/> is an error (below zero).</summary>
    /// <param name="status">The status of a UCX call.</param>
    /// <param name="call">Filled in by the compiler with the call's text.</param>
    public static void ThrowIfFailed(UcsStatus status, [CallerArgumentExpression(nameof(status))] string call = "")
    {
        if (status < 0)
        {
            Throw(status, call);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Throw(UcsStatus status, string call) => throw new UcxException(status, call);

    private static string FormatMessage(UcsStatus status, string call) =>
        $"{call} failed: {NameOf(status)} ({(int)status}): {DescriptionOf(status)}";

    /// <summary>UCX's name for a status: ErrConnectionReset -> UCS_ERR_CONNECTION_RESET; codes without a name in the enum by their range.</summary>
    internal static string NameOf(UcsStatus status)
    {
        int code = (int)status;
        if (status == UcsStatus.InProgress)
        {
            return "UCS_INPROGRESS";
        }

        if (Enum.IsDefined(status))
        {
            return ToUcxName(status.ToString());
        }

        return code switch
        {
            <= -40 and >= -59 => $"UCS_ERR_LINK_FAILURE_{code}",
            <= -60 and >= -89 => $"UCS_ERR_ENDPOINT_FAILURE_{code}",
            _ => $"UCS_STATUS_{code}",
        };
    }

    private static unsafe string DescriptionOf(UcsStatus status)
    {
        if (UcxLibrary.IsAvailable)
        {
            byte* text = Interop.Ucs.ucs_status_string(status);
            if (text != null)
            {
                return Marshal.PtrToStringUTF8((nint)text) ?? "unknown status";
            }
        }

        return "no description (libucs is not loaded)";
    }

    /// <summary>ErrConnectionReset -> UCS_ERR_CONNECTION_RESET, Ok -> UCS_OK.</summary>
    private static string ToUcxName(string enumName)
    {
        var sb = new StringBuilder("UCS_");
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
