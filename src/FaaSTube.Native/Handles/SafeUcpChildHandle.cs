using System.Runtime.InteropServices;

namespace FaaSTube.Native;

/// <summary>
/// A UCP object that lives in a parent (a worker in a context, an endpoint in a worker, ...): it
/// holds a reference to the parent for its whole life, so the parent is released after it
/// whatever order they are disposed in (as <see cref="SafeCudaChildHandle"/> does for CUDA).
/// </summary>
internal abstract class SafeUcpChildHandle : SafeHandle
{
    protected SafeUcpChildHandle(SafeHandle parent)
        : base(0, ownsHandle: true)
    {
        bool added = false;
        parent.DangerousAddRef(ref added);
        Parent = parent;
    }

    protected SafeHandle Parent { get; }

    public override bool IsInvalid => handle == 0;

    /// <summary>Sets the native value once the create call succeeded.</summary>
    internal void Attach(nint value) => SetHandle(value);

    protected sealed override bool ReleaseHandle()
    {
        try
        {
            return Free(handle, Parent.DangerousGetHandle());
        }
        finally
        {
            Parent.DangerousRelease();
        }
    }

    /// <summary>Frees the native object; the parent is still alive.</summary>
    protected abstract bool Free(nint value, nint parent);

    /// <summary>Drops the parent reference of a handle whose create call failed (nothing native to free).</summary>
    internal void AbandonUnattached()
    {
        if (IsInvalid)
        {
            SetHandleAsInvalid();
            Parent.DangerousRelease();
        }
    }
}
