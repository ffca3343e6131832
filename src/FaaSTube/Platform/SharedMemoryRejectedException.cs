namespace FaaSTube.Platform;

/// <summary>
/// A descriptor offered as shared memory is not what it must be (not a sealed memfd, the wrong size,
/// not mappable): <see cref="SealedSharedMemory.Adopt"/> closed it. The channels turn it into the client's
/// bad request (<c>src/FaaSTube/Channels/Transport/WindowAdoption.cs</c>).
/// </summary>
internal sealed class SharedMemoryRejectedException(string message) : Exception(message);
