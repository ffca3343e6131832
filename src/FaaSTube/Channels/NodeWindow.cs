using FaaSTube.Channels.Transport;
using FaaSTube.Devices;
using Microsoft.Win32.SafeHandles;
using FaaSTube.Platform;

namespace FaaSTube.Channels;

/// <summary>
/// The node's view of one client's window: the adopted anonymous shared memory (checked seals and
/// size: <see cref="SealedSharedMemory.Adopt"/>) registered (pinned) with the GPU once. The registration
/// owns the mapping: the mapping is released only after the registration is, so memory the driver
/// still has registered is never unmapped under it (and a later window mapped at the same address
/// never meets a stale registration).
/// </summary>
internal sealed class NodeWindow : IDisposable
{
    private readonly SealedSharedMemory _shared;
    private readonly PinnedBuffer _registration;

    private NodeWindow(SealedSharedMemory shared, PinnedBuffer registration)
    {
        _shared = shared;
        _registration = registration;
    }

    public int Length => _shared.Length;

    /// <summary>The registered window, for DMA.</summary>
    public Memory<byte> Memory => _registration.Memory;

    /// <summary>Adopts and registers a client's window; the descriptor is the node's from here on (closed on failure).</summary>
    public static NodeWindow Open(SafeFileHandle descriptor, long bytes, GpuDevice device)
    {
        var shared = WindowAdoption.Adopt(descriptor, bytes);
        try
        {
            return new NodeWindow(shared, device.RegisterHostMemory(shared.Pointer, shared.Length, shared.KeepAlive()));
        }
        catch
        {
            ((IDisposable)shared).Dispose();
            throw;
        }
    }

    /// <summary>
    /// A window the node makes itself for a remote client (<c>Channels/Remote/</c>): anonymous shared
    /// memory of <paramref name="bytes"/>, registered like an adopted one; the client's transport
    /// moves bytes into and out of it over the network.
    /// </summary>
    public static NodeWindow Allocate(int bytes, GpuDevice device)
    {
        var shared = SealedSharedMemory.Create(bytes);
        try
        {
            return new NodeWindow(shared, device.RegisterHostMemory(shared.Pointer, shared.Length, shared.KeepAlive()));
        }
        catch
        {
            ((IDisposable)shared).Dispose();
            throw;
        }
    }

    /// <summary>Lets go of the window: it is unregistered once the last copy through it has ended, then unmapped.</summary>
    public void Dispose()
    {
        ((IDisposable)_registration).Dispose();
        ((IDisposable)_shared).Dispose(); // the registration still holds the mapping until it is released
    }
}
