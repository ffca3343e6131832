namespace FaaSTube.Channels;

/// <summary>Why the node refused a call.</summary>
public enum TubeError : ushort
{
    /// <summary>No such id in this workflow (or it expired, or all its consumers are done).</summary>
    NotFound = 1,

    /// <summary>The request was malformed (bad frame, bad field, forged descriptor).</summary>
    BadRequest = 2,

    /// <summary>The client speaks another protocol version.</summary>
    VersionMismatch = 3,

    /// <summary>A frame was larger than the node accepts.</summary>
    FrameTooLarge = 4,

    /// <summary>The client's user is not allowed, or the object is not the client's.</summary>
    AccessDenied = 5,

    /// <summary>The client holds no lease on that id.</summary>
    NotLeased = 6,

    /// <summary>The GPU pool could not make room in time.</summary>
    OutOfMemory = 7,

    /// <summary>The node failed while serving the call (its log has the details, under the reference in the message).</summary>
    Internal = 8,

    /// <summary>The request asks for more than the node could ever hold (beyond the GPU's memory or the pool's cap): it fails at once.</summary>
    TooLarge = 9,
}

/// <summary>The node refused or failed a call; the connection stays usable unless the error says otherwise.</summary>
public class TubeException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="error">Why.</param>
    /// <param name="message">The node's explanation.</param>
    public TubeException(TubeError error, string message)
        : base($"{error}: {message}")
    {
        Error = error;
        Reason = message;
    }

    /// <summary>Creates the exception with an inner one (for node-side failures).</summary>
    /// <param name="error">Why.</param>
    /// <param name="message">The explanation.</param>
    /// <param name="inner">The cause.</param>
    public TubeException(TubeError error, string message, Exception inner)
        : base($"{error}: {message}", inner)
    {
        Error = error;
        Reason = message;
    }

    /// <summary>Why.</summary>
    public TubeError Error { get; }

    /// <summary>The explanation without the error's name (what goes over the wire).</summary>
    internal string Reason { get; }
}

/// <summary>The node is gone (it exited, crashed, or closed the connection): this and every pending and later call fail with it.</summary>
public sealed class TubeNodeUnavailableException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What was seen.</param>
    /// <param name="inner">The transport's error, if any.</param>
    public TubeNodeUnavailableException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

/// <summary>A refusal the node sent for a one-way request (Publish, Release): <see cref="TubeClient.OneWayFailed"/>.</summary>
/// <param name="error">The refusal.</param>
/// <param name="operation">"Publish" or "Release"; null when the client no longer remembers the request (over a thousand one-way requests later).</param>
/// <param name="id">The data the refused request named; null as for <paramref name="operation"/>.</param>
public sealed class TubeErrorEventArgs(TubeException error, string? operation = null, TubeId? id = null) : EventArgs
{
    /// <summary>The refusal, as the client's next call also throws it.</summary>
    public TubeException Error { get; } = error;

    /// <summary>The refused request: "Publish" or "Release" (null if no longer known).</summary>
    public string? Operation { get; } = operation;

    /// <summary>The id the refused request named (null if no longer known).</summary>
    public TubeId? Id { get; } = id;
}
