using System.Diagnostics;
using FaaSTube.Channels;

namespace FaaSTube.Diagnostics;

/// <summary>How FaaSTube's spans end when their work failed: <c>error.type</c> and an error status with a description.</summary>
internal static class Spans
{
    /// <summary>The <c>error.type</c> of a failure: a <see cref="TubeException"/>'s code (<c>NotFound</c>), else the exception's type.</summary>
    public static string ErrorType(Exception exception) =>
        exception switch
        {
            TubeException tube => tube.Error.ToString(),
            FaaSTubeException other => other.Code.ToString(), // NodeUnavailable, PoolRefused, DeviceOutOfMemory, ...
            _ => exception.GetType().FullName ?? exception.GetType().Name,
        };

    /// <summary>Marks <paramref name="activity"/> failed by <paramref name="exception"/>, with <paramref name="description"/> (the message a client is told, never a stack trace).</summary>
    public static void Fail(Activity? activity, Exception exception, string? description = null)
    {
        if (activity is null)
        {
            return;
        }

        activity.SetTag(TelemetryTags.ErrorType, ErrorType(exception));
        activity.SetStatus(ActivityStatusCode.Error, description ?? (exception as TubeException)?.Reason ?? exception.Message);
    }
}
