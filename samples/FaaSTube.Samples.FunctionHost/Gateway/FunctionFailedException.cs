namespace FaaSTube.Samples.FunctionHost.Gateway;

/// <summary>A function the gateway called failed: unreachable, or it answered a problem or something malformed.</summary>
internal sealed class FunctionFailedException(string function, int status, string code, string message, Exception? inner = null)
    : Exception($"{function}: {message}", inner)
{
    /// <summary>The function's name.</summary>
    public string Function => function;

    /// <summary>The gateway's status for it: the function's own 503 stays 503 (its node is away), anything else is 502.</summary>
    public int Status => status;

    /// <summary>The function's code (e.g. <c>NodeUnavailable</c>), or <c>FunctionFailed</c>.</summary>
    public string Code => code;
}
