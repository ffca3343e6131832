using System.Runtime.InteropServices;

namespace FaaSTube.Native.Handles;

/// <summary>A UCP object that lives in a parent (a worker in a context, an endpoint in a worker, ...): see <see cref="SafeChildHandle"/>.</summary>
internal abstract class SafeUcpChildHandle(SafeHandle parent) : SafeChildHandle(parent)
{
    protected SafeHandle Parent => ParentHandle;

    protected sealed override bool ReleaseChild() => Free(handle, Parent.DangerousGetHandle());

    /// <summary>Frees the native object; the parent is still alive.</summary>
    protected abstract bool Free(nint value, nint parent);
}
