using FaaSTube.Platform;
using Microsoft.Win32.SafeHandles;

namespace FaaSTube.Channels.Transport;

/// <summary>The node adopts shared memory a client sent (a window, a control ring): a refusal is the client's bad request.</summary>
internal static class WindowAdoption
{
    /// <summary><see cref="SealedSharedMemory.Adopt"/>, its refusal as <see cref="TubeException"/> (<see cref="TubeError.BadRequest"/>); the descriptor is closed either way on failure.</summary>
    public static SealedSharedMemory Adopt(SafeFileHandle descriptor, long bytes)
    {
        try
        {
            return SealedSharedMemory.Adopt(descriptor, bytes);
        }
        catch (SharedMemoryRejectedException e)
        {
            throw new TubeException(TubeError.BadRequest, e.Message);
        }
    }
}
