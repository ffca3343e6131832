using System.Runtime.InteropServices;

namespace FaaSTube.Native.Handles;

/// <summary>
/// A native object that lives in a parent (a CUDA object in its context, a UCP worker in its
/// context, an endpoint in its worker, ...): it holds a reference to the parent for its whole life,
/// so the parent is released after it whatever order they are disposed in (model: dotnet/runtime's
/// SafeZstdHandle children keeping their parent alive). The native value is attached once the
/// create call succeeded; a handle whose create call failed drops its reference with
/// <see cref="AbandonUnattached"/>.
/// </summary>
internal abstract class SafeChildHandle : SafeHandle
{
    protected SafeChildHandle(SafeHandle parent)
        : base(0, ownsHandle: true)
    {
        bool added = false;
        parent.DangerousAddRef(ref added);
        ParentHandle = parent;
    }

    /// <summary>The parent this object lives in (alive until this handle is released).</summary>
    protected SafeHandle ParentHandle { get; }

    public override bool IsInvalid => handle == 0;

    /// <summary>Sets the native value once the create call succeeded.</summary>
    internal void Attach(nint value) => SetHandle(value);

    protected sealed override bool ReleaseHandle()
    {
        try
        {
            return ReleaseChild();
        }
        finally
        {
            ParentHandle.DangerousRelease();
        }
    }

    /// <summary>Frees the native object; the parent is still alive.</summary>
    protected abstract bool ReleaseChild();

    /// <summary>Drops the parent reference of a handle whose create call failed (nothing native to free).</summary>
    internal void AbandonUnattached()
    {
        if (IsInvalid)
        {
            SetHandleAsInvalid();
            ParentHandle.DangerousRelease();
        }
    }
}
