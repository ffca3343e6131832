namespace FaaSTube.Native;

/// <summary>
/// The CUDA driver API's <c>CUresult</c> codes (a subset: the ones a data-passing library meets).
/// Codes not listed here still round-trip as their numeric value.
/// </summary>
public enum CudaResult
{
    /// <summary>CUDA_SUCCESS.</summary>
    Success = 0,
    /// <summary>CUDA_ERROR_INVALID_VALUE.</summary>
    ErrorInvalidValue = 1,
    /// <summary>CUDA_ERROR_OUT_OF_MEMORY.</summary>
    ErrorOutOfMemory = 2,
    /// <summary>CUDA_ERROR_NOT_INITIALIZED.</summary>
    ErrorNotInitialized = 3,
    /// <summary>CUDA_ERROR_DEINITIALIZED.</summary>
    ErrorDeinitialized = 4,
    /// <summary>CUDA_ERROR_NO_DEVICE.</summary>
    ErrorNoDevice = 100,
    /// <summary>CUDA_ERROR_INVALID_DEVICE.</summary>
    ErrorInvalidDevice = 101,
    /// <summary>CUDA_ERROR_INVALID_IMAGE.</summary>
    ErrorInvalidImage = 200,
    /// <summary>CUDA_ERROR_INVALID_CONTEXT.</summary>
    ErrorInvalidContext = 201,
    /// <summary>CUDA_ERROR_MAP_FAILED.</summary>
    ErrorMapFailed = 205,
    /// <summary>CUDA_ERROR_PEER_ACCESS_UNSUPPORTED.</summary>
    ErrorPeerAccessUnsupported = 217,
    /// <summary>CUDA_ERROR_INVALID_PTX.</summary>
    ErrorInvalidPtx = 218,
    /// <summary>CUDA_ERROR_UNSUPPORTED_PTX_VERSION.</summary>
    ErrorUnsupportedPtxVersion = 222,
    /// <summary>CUDA_ERROR_INVALID_SOURCE.</summary>
    ErrorInvalidSource = 300,
    /// <summary>CUDA_ERROR_FILE_NOT_FOUND.</summary>
    ErrorFileNotFound = 301,
    /// <summary>CUDA_ERROR_INVALID_HANDLE.</summary>
    ErrorInvalidHandle = 400,
    /// <summary>CUDA_ERROR_NOT_FOUND.</summary>
    ErrorNotFound = 500,
    /// <summary>CUDA_ERROR_NOT_READY (not an error: the work is still running).</summary>
    ErrorNotReady = 600,
    /// <summary>CUDA_ERROR_ILLEGAL_ADDRESS.</summary>
    ErrorIllegalAddress = 700,
    /// <summary>CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES.</summary>
    ErrorLaunchOutOfResources = 701,
    /// <summary>CUDA_ERROR_LAUNCH_TIMEOUT.</summary>
    ErrorLaunchTimeout = 702,
    /// <summary>CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED.</summary>
    ErrorPeerAccessAlreadyEnabled = 704,
    /// <summary>CUDA_ERROR_PEER_ACCESS_NOT_ENABLED.</summary>
    ErrorPeerAccessNotEnabled = 705,
    /// <summary>CUDA_ERROR_CONTEXT_IS_DESTROYED.</summary>
    ErrorContextIsDestroyed = 709,
    /// <summary>CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED.</summary>
    ErrorHostMemoryAlreadyRegistered = 712,
    /// <summary>CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED.</summary>
    ErrorHostMemoryNotRegistered = 713,
    /// <summary>CUDA_ERROR_LAUNCH_FAILED.</summary>
    ErrorLaunchFailed = 719,
    /// <summary>CUDA_ERROR_NOT_PERMITTED.</summary>
    ErrorNotPermitted = 800,
    /// <summary>CUDA_ERROR_NOT_SUPPORTED.</summary>
    ErrorNotSupported = 801,
    /// <summary>CUDA_ERROR_UNKNOWN.</summary>
    ErrorUnknown = 999,
}
