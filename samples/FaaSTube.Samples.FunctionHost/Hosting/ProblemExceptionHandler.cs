using Microsoft.AspNetCore.Diagnostics;

namespace FaaSTube.Samples.FunctionHost.Hosting;

/// <summary>
/// Turns the errors the hosts know (<see cref="FaaSTubeException"/>, <see cref="Gateway.FunctionFailedException"/>)
/// into problem answers with their code and message (<see cref="ErrorCodes"/>); while the node is away,
/// a <c>Retry-After</c> too. Anything else falls through to the framework's 500 problem, which carries
/// no exception details outside Development.
/// </summary>
internal sealed class ProblemExceptionHandler(IProblemDetailsService problems) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        if (ErrorCodes.Of(exception) is not var (status, code))
        {
            return false;
        }

        httpContext.Response.StatusCode = status;
        if (exception is FaaSTubeException { Code: FaaSTubeErrorCode.NodeUnavailable })
        {
            httpContext.Response.Headers.RetryAfter = "1";
        }

        return await problems.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = httpContext,
            Exception = exception,
            ProblemDetails =
            {
                Status = status,
                Title = code,
                Detail = exception.Message,
                Extensions = { ["code"] = code },
            },
        });
    }
}
