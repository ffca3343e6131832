using FaaSTube.Samples.FunctionHost.Gateway;

namespace FaaSTube.Samples.FunctionHost.Hosting;

/// <summary>
/// How the hosts answer a failure: an RFC 9457 problem (<c>application/problem+json</c>) with a
/// <c>code</c> (a <see cref="FaaSTubeErrorCode"/> name, or the host's own) and a message, never a
/// stack trace. The status says who is at fault: the caller (4xx), the node being away (503), or a
/// function or the node failing (502).
/// </summary>
internal static class ErrorCodes
{
    /// <summary>The request named a malformed id or an out-of-range field (the host's own check).</summary>
    public const string BadRequest = nameof(FaaSTubeErrorCode.BadRequest);

    /// <summary>The gateway's frames had no Content-Length, or one out of range.</summary>
    public const string BadLength = "BadLength";

    /// <summary>A function could not be reached, or answered something that is not a function's answer.</summary>
    public const string FunctionFailed = "FunctionFailed";

    /// <summary>The HTTP status for a FaaSTube error code.</summary>
    public static int Status(FaaSTubeErrorCode code) => code switch
    {
        FaaSTubeErrorCode.NodeUnavailable or FaaSTubeErrorCode.OutOfMemory or FaaSTubeErrorCode.DeviceOutOfMemory or FaaSTubeErrorCode.PoolRefused => StatusCodes.Status503ServiceUnavailable,
        FaaSTubeErrorCode.NotFound => StatusCodes.Status404NotFound,
        FaaSTubeErrorCode.AccessDenied => StatusCodes.Status403Forbidden,
        FaaSTubeErrorCode.BadRequest => StatusCodes.Status400BadRequest,
        FaaSTubeErrorCode.TooLarge or FaaSTubeErrorCode.FrameTooLarge => StatusCodes.Status413PayloadTooLarge,
        _ => StatusCodes.Status502BadGateway,
    };

    /// <summary>A problem answer with its code.</summary>
    public static IResult Problem(int status, string code, string detail) =>
        Results.Problem(statusCode: status, title: code, detail: detail, extensions: new Dictionary<string, object?> { ["code"] = code });

    /// <summary>The status and code of an exception the hosts know; null for any other (the framework's plain 500 problem).</summary>
    public static (int Status, string Code)? Of(Exception exception) => exception switch
    {
        FaaSTubeException e => (Status(e.Code), e.Code.ToString()),
        FunctionFailedException e => (e.Status, e.Code),
        _ => null,
    };
}
