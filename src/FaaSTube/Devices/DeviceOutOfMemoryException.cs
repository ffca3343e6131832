namespace FaaSTube.Devices;

/// <summary>The device could not allocate the requested memory (a FaaSTube error, not the runtime's <see cref="OutOfMemoryException"/>: the process is fine).</summary>
public sealed class DeviceOutOfMemoryException : FaaSTubeException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What was asked for and what was free.</param>
    /// <param name="inner">The backend's own error, if any.</param>
    public DeviceOutOfMemoryException(string message, Exception? inner = null)
        : base(FaaSTubeErrorCode.DeviceOutOfMemory, message, inner)
    {
    }
}
