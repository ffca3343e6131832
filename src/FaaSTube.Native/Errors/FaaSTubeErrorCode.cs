namespace FaaSTube;

/// <summary>
/// The kind of a <see cref="FaaSTubeException"/>. Values 1 to 99 are the node's refusals, with the
/// numbers they have on the wire (<c>TubeError</c> in <c>src/FaaSTube/Channels/TubeException.cs</c>);
/// the rest are raised in the caller's own process.
/// </summary>
public enum FaaSTubeErrorCode
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

    /// <summary>The node's GPU pool could not make room in time.</summary>
    OutOfMemory = 7,

    /// <summary>The node failed while serving the call (its log has the details).</summary>
    Internal = 8,

    /// <summary>The request asks for more than the node could ever hold.</summary>
    TooLarge = 9,

    /// <summary>The load of a named object failed (its loader threw, or its loader's process went away mid-load); the next caller loads again.</summary>
    LoadFailed = 10,

    /// <summary>No node answers (none is running, it exited, crashed, or closed the connection).</summary>
    NodeUnavailable = 100,

    /// <summary>A call on a GPU memory pool was refused (its <c>PoolError</c> says why).</summary>
    PoolRefused = 200,

    /// <summary>The device could not allocate the memory asked for.</summary>
    DeviceOutOfMemory = 300,

    /// <summary>A CUDA driver or NVRTC call failed (its <c>CudaResult</c> says why).</summary>
    CudaFailed = 400,

    /// <summary>A UCX call or operation failed (its <c>UcsStatus</c> says why).</summary>
    UcxFailed = 500,
}
