namespace FaaSTube.Native.Handles;

/// <summary>A UCP listener on a socket address (ucp_listener_destroy on release).</summary>
internal sealed unsafe class SafeUcpListenerHandle : SafeUcpChildHandle
{
    private SafeUcpListenerHandle(SafeUcpWorkerHandle worker)
        : base(worker)
    {
    }

    /// <summary>Creates a listener; <paramref name="parameters"/> are passed as they are.</summary>
    public static SafeUcpListenerHandle Create(SafeUcpWorkerHandle worker, ref UcpListenerParams parameters)
    {
        var result = new SafeUcpListenerHandle(worker);
        try
        {
            nint listener;
            fixed (UcpListenerParams* p = &parameters)
            {
                UcxException.ThrowIfFailed(Interop.Ucp.ucp_listener_create(worker.DangerousGetHandle(), p, &listener));
            }

            result.Attach(listener);
            return result;
        }
        finally
        {
            result.AbandonUnattached();
        }
    }

    protected override bool Free(nint value, nint parent)
    {
        Interop.Ucp.ucp_listener_destroy(value);
        return true;
    }
}
