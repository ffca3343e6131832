using System.Runtime.InteropServices;
using System.Text;
using FaaSTube.Native;
using FaaSTube.Native.Handles;

namespace FaaSTube.Devices.Cuda;

/// <summary>A real GPU through the CUDA driver API, in its primary context.</summary>
internal sealed unsafe class CudaGpuDevice : GpuDevice
{
    /// <summary>Idle events kept for reuse; more are made on demand and freed when returned to a full pool.</summary>
    private const int KeptEvents = 256;

    private readonly Lazy<CudaKernelModule> _kernels;
    private readonly Lazy<(int Generation, int Width)?> _pcieLink;
    private readonly DisposingObjectPool<SafeCudaEventHandle> _events;

    public CudaGpuDevice(int ordinal, GpuSystemOptions options)
        : base(ordinal, options)
    {
        int device;
        CudaException.ThrowIfFailed(Interop.Cuda.cuDeviceGet(&device, ordinal));
        CudaDevice = device;

        byte* name = stackalloc byte[256];
        CudaException.ThrowIfFailed(Interop.Cuda.cuDeviceGetName(name, 256, device));
        Name = Marshal.PtrToStringUTF8((nint)name) ?? $"CUDA device {ordinal}";

        byte* bus = stackalloc byte[64];
        CudaException.ThrowIfFailed(Interop.Cuda.cuDeviceGetPCIBusId(bus, 64, device));
        PciBusId = (Marshal.PtrToStringUTF8((nint)bus) ?? "").ToLowerInvariant();

        nuint total;
        CudaException.ThrowIfFailed(Interop.Cuda.cuDeviceTotalMem(&total, device));
        TotalMemory = (long)total;

        ComputeCapability = (Attribute(CuDeviceAttribute.ComputeCapabilityMajor), Attribute(CuDeviceAttribute.ComputeCapabilityMinor));
        MultiprocessorCount = Attribute(CuDeviceAttribute.MultiprocessorCount);
        Context = SafeCudaContextHandle.RetainPrimary(device);
        _events = new DisposingObjectPool<SafeCudaEventHandle>(() => CreateEvent(Context), KeptEvents, e => !e.IsClosed);
        _kernels = new Lazy<CudaKernelModule>(() => new CudaKernelModule(this), LazyThreadSafetyMode.ExecutionAndPublication);
        _pcieLink = new Lazy<(int Generation, int Width)?>(() => NvLinkDiscovery.PcieLink(PciBusId), LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>The PCIe link's maximum generation and width as NVML reports them (asked once); null without NVML.</summary>
    internal (int Generation, int Width)? PcieLink => _pcieLink.Value;

    /// <summary>From the PCIe link (<see cref="Topology.PcieBandwidth.Of"/>): Gen5 x16 is 55 GB/s.</summary>
    internal override double HostLinkBytesPerSecond => Topology.PcieBandwidth.Of(PcieLink);

    public override GpuBackend Backend => GpuBackend.Cuda;

    public override string Name { get; }

    public override string PciBusId { get; }

    public override long TotalMemory { get; }

    public int CudaDevice { get; }

    public (int Major, int Minor) ComputeCapability { get; }

    public int MultiprocessorCount { get; }

    internal SafeCudaContextHandle Context { get; }

    /// <summary>
    /// The kernels, loaded on first use (NVRTC compiles them once per architecture per process); the
    /// caller holds a reference until it calls <see cref="CudaKernelModule.Release"/>. Null, with the
    /// reason in <paramref name="error"/>, when they cannot be built (no NVRTC): copies still work.
    /// </summary>
    internal CudaKernelModule? AcquireKernels(out Exception? error)
    {
        try
        {
            var module = _kernels.Value;
            module.AddRef();
            error = null;
            return module;
        }
        catch (Exception e) when (e is CudaException or PlatformNotSupportedException or ObjectDisposedException)
        {
            error = e;
            return null;
        }
    }

    /// <summary>Device memory for a stream's own use, made even after the device was disposed (the stream keeps the context).</summary>
    internal DeviceBuffer AllocateForStream(long bytes) => AllocateCore(bytes);

    /// <summary>Pinned memory for a stream's own use, made even after the device was disposed.</summary>
    internal PinnedBuffer AllocatePinnedForStream(long bytes) => AllocatePinnedCore(bytes);

    internal SafeCudaEventHandle RentEvent() => _events.Get();

    internal void ReturnEvent(SafeCudaEventHandle cudaEvent) => _events.Return(cudaEvent);

    internal int Attribute(CuDeviceAttribute attribute)
    {
        int value;
        CudaException.ThrowIfFailed(Interop.Cuda.cuDeviceGetAttribute(&value, attribute, CudaDevice));
        return value;
    }

    private protected override GpuMemoryInfo GetMemoryInfoCore()
    {
        using var scope = Context.Enter();
        nuint free, total;
        CudaException.ThrowIfFailed(Interop.Cuda.cuMemGetInfo(&free, &total));
        return new GpuMemoryInfo((long)free, (long)total);
    }

    private protected override DeviceBuffer AllocateCore(long bytes)
    {
        var memory = new SafeDeviceMemoryHandle(Context);
        using var scope = Context.Enter();
        ulong pointer;
        var result = Interop.Cuda.cuMemAlloc(&pointer, (nuint)bytes);
        if (result != CudaResult.Success)
        {
            memory.AbandonUnattached();
            var error = new CudaException(result, $"cuMemAlloc({bytes})");
            throw result == CudaResult.ErrorOutOfMemory
                ? new DeviceOutOfMemoryException($"{this} cannot allocate {bytes} bytes.", error)
                : error;
        }

        memory.Attach((nint)pointer);
        return new DeviceBuffer(this, memory, pointer, bytes, imported: false);
    }

    private protected override PinnedBuffer AllocatePinnedCore(long bytes)
    {
        var memory = new SafeHostMemoryHandle(Context);
        using var scope = Context.Enter();
        void* pointer;
        var result = Interop.Cuda.cuMemHostAlloc(&pointer, (nuint)bytes, CuFlags.MemHostAllocPortable | CuFlags.MemHostAllocDeviceMap);
        if (result != CudaResult.Success)
        {
            memory.AbandonUnattached();
            CudaException.ThrowIfFailed(result, $"cuMemHostAlloc({bytes}, PORTABLE | DEVICEMAP)");
        }

        memory.Attach((nint)pointer);
        return new PinnedBuffer(this, memory, (nint)pointer, bytes, registered: false);
    }

    private protected override PinnedBuffer RegisterHostMemoryCore(nint pointer, long bytes)
    {
        var registration = new SafeHostRegistrationHandle(Context);
        using var scope = Context.Enter();
        var result = Interop.Cuda.cuMemHostRegister((void*)pointer, (nuint)bytes, CuFlags.MemHostRegisterPortable | CuFlags.MemHostRegisterDeviceMap);
        if (result != CudaResult.Success)
        {
            registration.AbandonUnattached();
            CudaException.ThrowIfFailed(result, $"cuMemHostRegister(0x{pointer:x}, {bytes}, PORTABLE | DEVICEMAP)");
        }

        registration.Attach(pointer);
        return new PinnedBuffer(this, registration, pointer, bytes, registered: true);
    }

    private protected override GpuStream CreateStreamCore(int priority) => CudaGpuStream.Create(this, priority);

    private protected override GpuStream WrapStreamCore(nint nativeStream) => CudaGpuStream.Wrap(this, nativeStream);

    private protected override nint NativeContextCore => Context.DangerousGetHandle();

    private protected override IpcMemoryHandle ExportCore(DeviceBuffer buffer)
    {
        using var scope = Context.Enter();
        CuIpcHandle handle;
        CudaException.ThrowIfFailed(Interop.Cuda.cuIpcGetMemHandle(&handle, buffer.Address));
        return new IpcMemoryHandle(GpuBackend.Cuda, buffer.Length, new ReadOnlySpan<byte>(&handle, CuIpcHandle.Size));
    }

    private protected override DeviceBuffer ImportCore(IpcMemoryHandle handle)
    {
        CuIpcHandle native = default;
        handle.Opaque.CopyTo(new Span<byte>(&native, CuIpcHandle.Size));
        var mapping = new SafeIpcMappingHandle(Context);
        using var scope = Context.Enter();
        ulong pointer;
        var result = Interop.Cuda.cuIpcOpenMemHandle(&pointer, native, CuFlags.IpcMemLazyEnablePeerAccess);
        if (result != CudaResult.Success)
        {
            mapping.AbandonUnattached();
            throw new ArgumentException(
                "The IPC handle could not be opened (its allocation was freed, or it was exported by this same process).",
                nameof(handle), new CudaException(result, "cuIpcOpenMemHandle_v2"));
        }

        mapping.Attach((nint)pointer);
        return new DeviceBuffer(this, mapping, pointer, handle.Length, imported: true);
    }

    private protected override bool CanAccessPeerCore(GpuDevice peer)
    {
        int can;
        CudaException.ThrowIfFailed(Interop.Cuda.cuDeviceCanAccessPeer(&can, CudaDevice, ((CudaGpuDevice)peer).CudaDevice));
        return can != 0;
    }

    private protected override void EnablePeerAccessCore(GpuDevice peer)
    {
        using var scope = Context.Enter();
        var result = Interop.Cuda.cuCtxEnablePeerAccess(((CudaGpuDevice)peer).Context.DangerousGetHandle(), 0);
        if (result != CudaResult.ErrorPeerAccessAlreadyEnabled)
        {
            CudaException.ThrowIfFailed(result, "cuCtxEnablePeerAccess");
        }
    }

    /// <summary>
    /// In order: the idle pooled events, the device's reference to the kernel module, then its
    /// reference to the context. Streams and buffers still alive hold their own references (events
    /// in flight are freed when their op completes), so the module unloads and the primary context
    /// is released when the last of them goes, not at the next garbage collection.
    /// </summary>
    private protected override void DisposeCore()
    {
        _events.Dispose();
        if (_kernels.IsValueCreated)
        {
            _kernels.Value.Dispose();
        }

        Context.ReleaseOwnerReference();
    }

    /// <summary>
    /// An event for completions: BLOCKING_SYNC, so <c>cuEventSynchronize</c> sleeps in the driver
    /// instead of spinning; DISABLE_TIMING, which is cheaper to record.
    /// </summary>
    private static SafeCudaEventHandle CreateEvent(SafeCudaContextHandle context)
    {
        var cudaEvent = new SafeCudaEventHandle(context);
        using var scope = context.Enter();
        nint handle;
        var result = Interop.Cuda.cuEventCreate(&handle, CuFlags.EventBlockingSync | CuFlags.EventDisableTiming);
        if (result != CudaResult.Success)
        {
            cudaEvent.AbandonUnattached();
            CudaException.ThrowIfFailed(result, "cuEventCreate(BLOCKING_SYNC | DISABLE_TIMING)");
        }

        cudaEvent.Attach(handle);
        return cudaEvent;
    }
}
