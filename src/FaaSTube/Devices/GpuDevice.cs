using System.Runtime.InteropServices;
namespace FaaSTube.Devices;

/// <summary>
/// One GPU: memory, streams, IPC export/import of allocations and peer access. Made by
/// <see cref="GpuSystem.Open(GpuSystemOptions?)"/>; the same contract holds on CUDA and on the simulated GPU.
/// Disposing the device stops new work on it; buffers and streams made from it stay valid until
/// they are disposed themselves (they keep the device's context alive).
/// </summary>
public abstract class GpuDevice : IDisposable
{
    private int _disposed;

    private protected GpuDevice(int ordinal, GpuSystemOptions options)
    {
        Ordinal = ordinal;
        Options = options;
    }

    /// <summary>
    /// The device's index in its <see cref="GpuSystem"/>; on CUDA also the CUDA device ordinal
    /// (<c>cuDeviceGet(&amp;device, Ordinal)</c>, as this process sees the GPUs after <c>CUDA_VISIBLE_DEVICES</c>).
    /// </summary>
    public int Ordinal { get; }

    /// <summary>
    /// The driver context the device's memory and streams live in, for the function's own GPU code:
    /// on CUDA the device's primary context (<c>CUcontext</c>, the one the runtime API and most
    /// frameworks use; make it current with <c>cuCtxSetCurrent</c> before creating streams to pass to
    /// <see cref="WrapStream"/>); 0 on the simulated GPU, which has no driver. Valid while any of the
    /// device's buffers or streams is alive.
    /// </summary>
    public nint NativeContext
    {
        get
        {
            ThrowIfDisposed();
            return NativeContextCore;
        }
    }

    /// <summary>The backend that drives this device.</summary>
    public abstract GpuBackend Backend { get; }

    /// <summary>The device's name, e.g. <c>NVIDIA H100 80GB HBM3</c>.</summary>
    public abstract string Name { get; }

    /// <summary>The PCI bus id (<c>0000:1b:00.0</c>), used to group GPUs under PCIe switches.</summary>
    public abstract string PciBusId { get; }

    /// <summary>Total memory in bytes.</summary>
    public abstract long TotalMemory { get; }

    /// <summary>True once disposed.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    internal GpuSystemOptions Options { get; }

    /// <summary>
    /// True when every new allocation is guaranteed to read as zeros (the simulated backend creates a
    /// new file per allocation); false where freed memory may come back with old contents (CUDA), so
    /// the memory pool clears each new slab before it hands out a block of it.
    /// </summary>
    internal virtual bool FreshAllocationsAreZeroed => false;

    /// <summary>
    /// The bandwidth per direction of the device's link to the host, bytes/s, for the transfer
    /// scheduler: the simulated machine's modelled host link; on CUDA the PCIe link's generation and
    /// width (<see cref="Topology.PcieBandwidth"/>).
    /// </summary>
    internal abstract double HostLinkBytesPerSecond { get; }

    /// <summary>Free and total memory now.</summary>
    public GpuMemoryInfo GetMemoryInfo()
    {
        ThrowIfDisposed();
        return GetMemoryInfoCore();
    }

    /// <summary>Allocates device memory that can be exported to other processes.</summary>
    /// <param name="bytes">Size in bytes, at least 1.</param>
    /// <exception cref="DeviceOutOfMemoryException">The device has not enough free memory.</exception>
    public DeviceBuffer Allocate(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        ThrowIfDisposed();
        return AllocateCore(bytes);
    }

    /// <summary>Allocates page-locked host memory (portable, mapped) for full-speed DMA.</summary>
    /// <param name="bytes">Size in bytes, 1 to 2 GiB - 1.</param>
    public PinnedBuffer AllocatePinned(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bytes, int.MaxValue);
        ThrowIfDisposed();
        return AllocatePinnedCore(bytes);
    }

    /// <summary>
    /// Page-locks the caller's host memory (portable, mapped) so that copies use it directly; the
    /// memory must stay allocated until the returned buffer is disposed.
    /// </summary>
    /// <param name="pointer">The first byte (page-aligned is best).</param>
    /// <param name="bytes">Size in bytes, 1 to 2 GiB - 1.</param>
    public PinnedBuffer RegisterHostMemory(nint pointer, long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfZero(pointer);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bytes, int.MaxValue);
        ThrowIfDisposed();
        return RegisterHostMemoryCore(pointer, bytes);
    }

    /// <summary>
    /// Registers memory whose mapping <paramref name="mapping"/> keeps alive, and makes the
    /// registration own it: the mapping reference is released only after the memory is unregistered
    /// (which waits for the last copy that pinned it). So registered memory is never unmapped under
    /// the driver, and a later mapping at the same address never meets a stale registration.
    /// </summary>
    /// <param name="pointer">The first byte.</param>
    /// <param name="bytes">Length.</param>
    /// <param name="mapping">A reference on the mapping; the returned buffer owns it (released on failure too).</param>
    internal PinnedBuffer RegisterHostMemory(nint pointer, long bytes, SafeHandle mapping)
    {
        PinnedBuffer registration;
        try
        {
            registration = RegisterHostMemory(pointer, bytes);
        }
        catch
        {
            mapping.Dispose();
            throw;
        }

        return new PinnedBuffer(this, new OwnedMapping(registration.Owner, mapping), pointer, bytes, registered: true);
    }

    /// <summary>A registration that releases its mapping after itself.</summary>
    private sealed class OwnedMapping(SafeHandle registration, SafeHandle mapping) : SafeHandle(1, ownsHandle: true)
    {
        public override bool IsInvalid => false;

        protected override bool ReleaseHandle()
        {
            registration.Dispose();
            mapping.Dispose();
            return true;
        }
    }

    /// <summary>Creates a stream: an ordered queue of copies and kernels.</summary>
    /// <param name="priority">0 is normal; higher numbers run first where the backend supports priorities.</param>
    public GpuStream CreateStream(int priority = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(priority);
        ThrowIfDisposed();
        return CreateStreamCore(priority);
    }

    /// <summary>
    /// Wraps a stream created elsewhere (by a framework or the function's own CUDA code), so that
    /// this library's copies and kernels can be issued on it and <see cref="GpuStream.SynchronizeAsync"/>
    /// (which <c>TubeClient.PublishAsync</c> calls) waits for everything enqueued on it, ours or not:
    /// on CUDA by recording an event on the stream and waiting for it. The stream is borrowed:
    /// disposing the wrapper destroys nothing; the caller keeps the native stream alive until the
    /// wrapper is disposed.
    /// </summary>
    /// <param name="nativeStream">
    /// On CUDA a <c>CUstream</c> of <see cref="NativeContext"/> (0: that context's legacy default
    /// stream); on the simulated GPU the <see cref="GpuStream.NativeHandle"/> of a live stream of this device.
    /// </param>
    /// <exception cref="ArgumentException">The handle is not a stream of this device (another context, another device, a disposed stream).</exception>
    public GpuStream WrapStream(nint nativeStream)
    {
        ThrowIfDisposed();
        return WrapStreamCore(nativeStream);
    }

    /// <summary>Makes a handle that another process passes to <see cref="Import"/> to map the same memory.</summary>
    /// <param name="buffer">A buffer allocated on this device (not an imported one).</param>
    public IpcMemoryHandle Export(DeviceBuffer buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        ThrowIfDisposed();
        if (buffer.Device != this)
        {
            throw new ArgumentException($"{buffer} belongs to {buffer.Device}, not {this}.", nameof(buffer));
        }

        if (buffer.IsImported)
        {
            throw new ArgumentException("An imported buffer cannot be exported again; export the original.", nameof(buffer));
        }

        buffer.AddRef();
        try
        {
            var handle = ExportCore(buffer);
            ExportRegistry.Add(handle, buffer);
            return handle;
        }
        finally
        {
            buffer.Release();
        }
    }

    /// <summary>
    /// Maps memory exported by another process into this device's context. A handle this same
    /// process exported (CUDA refuses to open those) gives back an alias of the local memory
    /// (<see cref="DeviceBuffer.IsAlias"/>, same address): disposing the alias frees nothing, and it
    /// keeps the memory allocated until it is disposed, even if the exported buffer is disposed first.
    /// </summary>
    /// <param name="handle">The exporter's handle.</param>
    /// <exception cref="ArgumentException">The handle is from another backend, or its allocation is gone.</exception>
    public DeviceBuffer Import(IpcMemoryHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        ThrowIfDisposed();
        if (handle.Backend != Backend)
        {
            throw new ArgumentException($"The handle is from the {handle.Backend} backend; this device is {Backend}.", nameof(handle));
        }

        if (ExportRegistry.Find(handle) is { } local)
        {
            try
            {
                return Alias(local, handle);
            }
            catch (ObjectDisposedException)
            {
                // Disposed just now: the backend's import says what a freed allocation says.
            }
        }

        return ImportCore(handle);
    }

    /// <summary>True when this device can read and write <paramref name="peer"/>'s memory directly.</summary>
    /// <param name="peer">Another device of the same system.</param>
    public bool CanAccessPeer(GpuDevice peer)
    {
        CheckPeer(peer);
        return CanAccessPeerCore(peer);
    }

    /// <summary>Enables direct access from this device to <paramref name="peer"/>'s memory (idempotent).</summary>
    /// <param name="peer">Another device of the same system.</param>
    /// <exception cref="NotSupportedException">The pair has no peer path.</exception>
    public void EnablePeerAccess(GpuDevice peer)
    {
        CheckPeer(peer);
        if (!CanAccessPeerCore(peer))
        {
            throw new NotSupportedException($"{this} cannot access {peer} directly.");
        }

        EnablePeerAccessCore(peer);
    }

    /// <summary>Stops new work on the device; its buffers and streams stay valid until disposed.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            DisposeCore();
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Backend} GPU {Ordinal} ({Name})";

    private protected void ThrowIfDisposed()
    {
        if (IsDisposed)
        {
            throw new ObjectDisposedException(ToString(), $"{this} was disposed.");
        }
    }

    /// <summary>Pinned memory for a stream's own staging, made without the disposal check: streams outlive their device.</summary>
    internal PinnedBuffer AllocatePinnedForStaging(long bytes) => AllocatePinnedCore(bytes);

    private DeviceBuffer Alias(DeviceBuffer local, IpcMemoryHandle handle)
    {
        // Another GpuSystem of this process may have exported it: the same ordinal is the same GPU (CUDA: the same primary context).
        if (local.Device.Ordinal != Ordinal)
        {
            if (!CanAccessPeerCore(local.Device))
            {
                throw new ArgumentException($"The handle names memory of this process on {local.Device}, which {this} cannot reach.", nameof(handle));
            }

            EnablePeerAccessCore(local.Device); // what cuIpcOpenMemHandle's LAZY_ENABLE_PEER_ACCESS does for another process
        }

        return new DeviceBuffer(this, new AliasHandle(local.Handle), local.Address, Math.Min(handle.Length, local.Length), imported: true);
    }

    private void CheckPeer(GpuDevice peer)
    {
        ArgumentNullException.ThrowIfNull(peer);
        ThrowIfDisposed();
        if (peer == this || peer.Backend != Backend)
        {
            throw new ArgumentException($"{peer} is not a peer of {this}.", nameof(peer));
        }
    }

    private protected abstract GpuMemoryInfo GetMemoryInfoCore();
    private protected abstract DeviceBuffer AllocateCore(long bytes);
    private protected abstract PinnedBuffer AllocatePinnedCore(long bytes);
    private protected abstract PinnedBuffer RegisterHostMemoryCore(nint pointer, long bytes);
    private protected abstract GpuStream CreateStreamCore(int priority);
    private protected abstract GpuStream WrapStreamCore(nint nativeStream);
    private protected abstract nint NativeContextCore { get; }
    private protected abstract IpcMemoryHandle ExportCore(DeviceBuffer buffer);
    private protected abstract DeviceBuffer ImportCore(IpcMemoryHandle handle);
    private protected abstract bool CanAccessPeerCore(GpuDevice peer);
    private protected abstract void EnablePeerAccessCore(GpuDevice peer);
    private protected abstract void DisposeCore();
}
