using System.Runtime.InteropServices;

namespace FaaSTube.Native.Handles;

/// <summary>
/// A retained primary context of one device. Objects created in the context
/// (<see cref="SafeCudaChildHandle"/>) add a reference to it, so the context outlives them
/// whatever order they are disposed in.
/// </summary>
internal sealed unsafe class SafeCudaContextHandle : SafeHandle
{
    private SafeCudaContextHandle(int device)
        : base(0, ownsHandle: true) => Device = device;

    public int Device { get; }

    public override bool IsInvalid => handle == 0;

    /// <summary>Retains the primary context of <paramref name="device"/>.</summary>
    public static SafeCudaContextHandle RetainPrimary(int device)
    {
        CudaLibrary.ThrowIfUnavailable();
        var result = new SafeCudaContextHandle(device);
        nint ctx;
        CudaException.ThrowIfFailed(Interop.Cuda.cuDevicePrimaryCtxRetain(&ctx, device));
        result.SetHandle(ctx);
        return result;
    }

    /// <summary>
    /// Drops the owner's (the device's) reference without closing the handle: objects still alive
    /// in the context keep it, and can still make new children (a stream's events after its device
    /// was disposed); the context is released when the last reference goes. The finalizer is
    /// suppressed: the handle is released by reference count, never by finalization.
    /// </summary>
    public void ReleaseOwnerReference()
    {
        GC.SuppressFinalize(this);
        DangerousRelease();
    }

    /// <summary>Makes this context current on the calling thread until the scope is disposed.</summary>
    public ContextScope Enter() => new(this);

    protected override bool ReleaseHandle() =>
        Interop.Cuda.cuDevicePrimaryCtxRelease(Device) == CudaResult.Success;

    /// <summary>Push on enter, pop on dispose; keeps the context alive while entered.</summary>
    internal readonly ref struct ContextScope
    {
        private readonly SafeCudaContextHandle _context;

        public ContextScope(SafeCudaContextHandle context)
        {
            bool added = false;
            context.DangerousAddRef(ref added);
            var result = Interop.Cuda.cuCtxPushCurrent(context.DangerousGetHandle());
            if (result != CudaResult.Success)
            {
                context.DangerousRelease();
                CudaException.ThrowIfFailed(result, "cuCtxPushCurrent");
            }

            _context = context;
        }

        public void Dispose()
        {
            nint popped;
            Interop.Cuda.cuCtxPopCurrent(&popped);
            _context.DangerousRelease();
        }
    }
}
