namespace FaaSTube;

/// <summary>
/// The root of every error FaaSTube throws to its users: the node's refusals, a node that is not
/// there, the pool's refusals, a device out of memory, and failed CUDA and UCX calls. Catch it to
/// handle them all; <see cref="Code"/> says which kind it is. Misuse of an API (a null or out-of-range
/// argument, a disposed object, a cancelled token) keeps the .NET exceptions for it
/// (<see cref="ArgumentException"/>, <see cref="ObjectDisposedException"/>, <see cref="OperationCanceledException"/>).
/// </summary>
public abstract class FaaSTubeException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="code">The kind of error.</param>
    /// <param name="message">What happened.</param>
    /// <param name="inner">The cause, if any.</param>
    protected FaaSTubeException(FaaSTubeErrorCode code, string message, Exception? inner = null)
        : base(message, inner) => Code = code;

    /// <summary>The kind of error: one code for every FaaSTube error, whichever type carries it.</summary>
    public FaaSTubeErrorCode Code { get; }
}
