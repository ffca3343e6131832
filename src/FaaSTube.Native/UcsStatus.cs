namespace FaaSTube.Native;

/// <summary>
/// UCX's <c>ucs_status_t</c> (ucs/type/status.h of UCX 1.13). The C enum is declared packed, so
/// it is one signed byte wherever it is passed or returned; this enum has that size. Codes not
/// listed here (the link and endpoint failure ranges) still round-trip as their value.
/// </summary>
public enum UcsStatus : sbyte
{
    /// <summary>UCS_OK.</summary>
    Ok = 0,
    /// <summary>UCS_INPROGRESS.</summary>
    InProgress = 1,
    /// <summary>UCS_ERR_NO_MESSAGE.</summary>
    ErrNoMessage = -1,
    /// <summary>UCS_ERR_NO_RESOURCE.</summary>
    ErrNoResource = -2,
    /// <summary>UCS_ERR_IO_ERROR.</summary>
    ErrIoError = -3,
    /// <summary>UCS_ERR_NO_MEMORY.</summary>
    ErrNoMemory = -4,
    /// <summary>UCS_ERR_INVALID_PARAM.</summary>
    ErrInvalidParam = -5,
    /// <summary>UCS_ERR_UNREACHABLE.</summary>
    ErrUnreachable = -6,
    /// <summary>UCS_ERR_INVALID_ADDR.</summary>
    ErrInvalidAddr = -7,
    /// <summary>UCS_ERR_NOT_IMPLEMENTED.</summary>
    ErrNotImplemented = -8,
    /// <summary>UCS_ERR_MESSAGE_TRUNCATED.</summary>
    ErrMessageTruncated = -9,
    /// <summary>UCS_ERR_NO_PROGRESS.</summary>
    ErrNoProgress = -10,
    /// <summary>UCS_ERR_BUFFER_TOO_SMALL.</summary>
    ErrBufferTooSmall = -11,
    /// <summary>UCS_ERR_NO_ELEM.</summary>
    ErrNoElem = -12,
    /// <summary>UCS_ERR_SOME_CONNECTS_FAILED.</summary>
    ErrSomeConnectsFailed = -13,
    /// <summary>UCS_ERR_NO_DEVICE.</summary>
    ErrNoDevice = -14,
    /// <summary>UCS_ERR_BUSY.</summary>
    ErrBusy = -15,
    /// <summary>UCS_ERR_CANCELED.</summary>
    ErrCanceled = -16,
    /// <summary>UCS_ERR_SHMEM_SEGMENT.</summary>
    ErrShmemSegment = -17,
    /// <summary>UCS_ERR_ALREADY_EXISTS.</summary>
    ErrAlreadyExists = -18,
    /// <summary>UCS_ERR_OUT_OF_RANGE.</summary>
    ErrOutOfRange = -19,
    /// <summary>UCS_ERR_TIMED_OUT.</summary>
    ErrTimedOut = -20,
    /// <summary>UCS_ERR_EXCEEDS_LIMIT.</summary>
    ErrExceedsLimit = -21,
    /// <summary>UCS_ERR_UNSUPPORTED.</summary>
    ErrUnsupported = -22,
    /// <summary>UCS_ERR_REJECTED.</summary>
    ErrRejected = -23,
    /// <summary>UCS_ERR_NOT_CONNECTED.</summary>
    ErrNotConnected = -24,
    /// <summary>UCS_ERR_CONNECTION_RESET.</summary>
    ErrConnectionReset = -25,
    /// <summary>UCS_ERR_FIRST_LINK_FAILURE (-40 .. -59 are link failures).</summary>
    ErrFirstLinkFailure = -40,
    /// <summary>UCS_ERR_LAST_LINK_FAILURE.</summary>
    ErrLastLinkFailure = -59,
    /// <summary>UCS_ERR_FIRST_ENDPOINT_FAILURE (-60 .. -89 are endpoint failures).</summary>
    ErrFirstEndpointFailure = -60,
    /// <summary>UCS_ERR_ENDPOINT_TIMEOUT.</summary>
    ErrEndpointTimeout = -80,
    /// <summary>UCS_ERR_LAST_ENDPOINT_FAILURE.</summary>
    ErrLastEndpointFailure = -89,
    /// <summary>UCS_ERR_LAST (every error code is above it).</summary>
    ErrLast = -100,
}
