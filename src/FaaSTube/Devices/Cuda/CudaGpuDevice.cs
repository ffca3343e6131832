using System.Runtime.InteropServices;
using System.Text;
using FaaSTube.Native;
using Microsoft.Extensions.ObjectPool;

namespace FaaSTube.Devices.Cuda;

/// <summary>A real GPU through the CUDA driver API, in its primary context.</summary>
internal sealed unsafe class CudaGpuDevice : GpuDevice
{
    private readonly Lazy<CudaKernelModule> _kernels;
    private readonly ObjectPool<SafeCudaEventHandle> _events;

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
        _events = new DefaultObjectPool<SafeCudaEventHandle>(new EventPolicy(Context), 256);
        _kernels = new Lazy<CudaKernelModule>(() => new CudaKernelModule(this), LazyThreadSafetyMode.ExecutionAndPublication);
    }

    public override GpuBackend Backend => GpuBackend.Cuda;

    public override string Name { get; }

    public override string PciBusId { get; }

    public override long TotalMemory { get; }

    public int CudaDevice { get; }

    public (int Major, int Minor) ComputeCapability { get; }

    public int MultiprocessorCount { get; }

    internal SafeCudaContextHandle Context { get; }

    internal CudaKernelModule Kernels => _kernels.Value;

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

    private protected override GpuStream CreateStreamCore(int priority) => new CudaGpuStream(this, priority);

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

    private protected override void DisposeCore()
    {
        // Children hold references: the primary context is released when the last of them is.
        Context.Dispose();
    }

    /// <summary>Makes events (no timing: cheaper) in the device's context; drops closed ones.</summary>
    private sealed class EventPolicy(SafeCudaContextHandle context) : IPooledObjectPolicy<SafeCudaEventHandle>
    {
        public SafeCudaEventHandle Create()
        {
            var cudaEvent = new SafeCudaEventHandle(context);
            using var scope = context.Enter();
            nint handle;
            var result = Interop.Cuda.cuEventCreate(&handle, CuFlags.EventDisableTiming);
            if (result != CudaResult.Success)
            {
                cudaEvent.AbandonUnattached();
                CudaException.ThrowIfFailed(result, "cuEventCreate(DISABLE_TIMING)");
            }

            cudaEvent.Attach(handle);
            return cudaEvent;
        }

        public bool Return(SafeCudaEventHandle obj) => !obj.IsClosed;
    }
}
