namespace FaaSTube.Native.Handles;

/// <summary>
/// A driver object that lives in a context (<see cref="SafeChildHandle"/>): released with the context current.
/// </summary>
internal abstract class SafeCudaChildHandle(SafeCudaContextHandle context) : SafeChildHandle(context)
{
    public SafeCudaContextHandle Context { get; } = context;

    protected sealed override bool ReleaseChild()
    {
        using var scope = Context.Enter();
        return Free(handle) == CudaResult.Success;
    }

    /// <summary>Frees the native object; the context is current.</summary>
    protected abstract CudaResult Free(nint value);
}

/// <summary>A stream (cuStreamDestroy on release).</summary>
internal sealed class SafeCudaStreamHandle(SafeCudaContextHandle context) : SafeCudaChildHandle(context)
{
    protected override CudaResult Free(nint value) => Interop.Cuda.cuStreamDestroy(value);
}

/// <summary>
/// A stream created by someone else (a framework, the function's own CUDA code) and only borrowed:
/// releasing it destroys nothing, it only drops the context reference that kept the stream's context alive.
/// </summary>
internal sealed class SafeBorrowedCudaStreamHandle(SafeCudaContextHandle context) : SafeCudaChildHandle(context)
{
    /// <summary>The legacy default stream (handle 0) is a valid stream to borrow.</summary>
    public override bool IsInvalid => false;

    protected override CudaResult Free(nint value) => CudaResult.Success;
}

/// <summary>An event (cuEventDestroy on release).</summary>
internal sealed class SafeCudaEventHandle(SafeCudaContextHandle context) : SafeCudaChildHandle(context)
{
    protected override CudaResult Free(nint value) => Interop.Cuda.cuEventDestroy(value);
}

/// <summary>A cuMemAlloc allocation (cuMemFree on release).</summary>
internal sealed class SafeDeviceMemoryHandle(SafeCudaContextHandle context) : SafeCudaChildHandle(context)
{
    protected override CudaResult Free(nint value) => Interop.Cuda.cuMemFree((ulong)value);
}

/// <summary>An allocation of another process opened through its IPC handle (cuIpcCloseMemHandle on release).</summary>
internal sealed class SafeIpcMappingHandle(SafeCudaContextHandle context) : SafeCudaChildHandle(context)
{
    protected override CudaResult Free(nint value) => Interop.Cuda.cuIpcCloseMemHandle((ulong)value);
}

/// <summary>Pinned host memory from cuMemHostAlloc (cuMemFreeHost on release).</summary>
internal sealed unsafe class SafeHostMemoryHandle(SafeCudaContextHandle context) : SafeCudaChildHandle(context)
{
    protected override CudaResult Free(nint value) => Interop.Cuda.cuMemFreeHost((void*)value);
}

/// <summary>Host memory pinned with cuMemHostRegister (cuMemHostUnregister on release; the memory itself is the caller's).</summary>
internal sealed unsafe class SafeHostRegistrationHandle(SafeCudaContextHandle context) : SafeCudaChildHandle(context)
{
    protected override CudaResult Free(nint value) => Interop.Cuda.cuMemHostUnregister((void*)value);
}

/// <summary>A loaded module (cuModuleUnload on release).</summary>
internal sealed class SafeCudaModuleHandle(SafeCudaContextHandle context) : SafeCudaChildHandle(context)
{
    protected override CudaResult Free(nint value) => Interop.Cuda.cuModuleUnload(value);
}
