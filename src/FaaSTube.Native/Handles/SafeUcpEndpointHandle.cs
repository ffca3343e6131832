namespace FaaSTube.Native.Handles;

/// <summary>
/// A UCP endpoint. Released (disposed, or finalized if leaked) it is closed by force
/// (ucp_ep_close_nbx with UCP_EP_CLOSE_FLAG_FORCE) and the close request is freed: UCX finishes
/// it on the worker's next progress or when the worker is destroyed. A graceful close that waits
/// for the flush is <see cref="BeginClose"/>.
/// </summary>
internal sealed unsafe class SafeUcpEndpointHandle : SafeUcpChildHandle
{
    private SafeUcpEndpointHandle(SafeUcpWorkerHandle worker)
        : base(worker)
    {
    }

    /// <summary>Creates an endpoint; <paramref name="parameters"/> are passed as they are.</summary>
    public static SafeUcpEndpointHandle Create(SafeUcpWorkerHandle worker, ref UcpEpParams parameters)
    {
        var result = new SafeUcpEndpointHandle(worker);
        try
        {
            nint endpoint;
            fixed (UcpEpParams* p = &parameters)
            {
                UcxException.ThrowIfFailed(Interop.Ucp.ucp_ep_create(worker.DangerousGetHandle(), p, &endpoint));
            }

            result.Attach(endpoint);
            return result;
        }
        finally
        {
            result.AbandonUnattached();
        }
    }

    /// <summary>
    /// Starts ucp_ep_close_nbx with <paramref name="parameters"/> and gives up the handle (nothing is
    /// freed again on release). Returns the <c>ucs_status_ptr_t</c>: a request the caller completes
    /// and frees, or a status. Null-pointer status (UCS_OK) when already closed.
    /// </summary>
    public void* BeginClose(UcpRequestParam* parameters)
    {
        if (IsClosed || IsInvalid)
        {
            return null;
        }

        nint endpoint = handle;
        SetHandleAsInvalid();
        try
        {
            return Interop.Ucp.ucp_ep_close_nbx(endpoint, parameters);
        }
        finally
        {
            Parent.DangerousRelease();
        }
    }

    protected override bool Free(nint value, nint parent)
    {
        var parameters = new UcpRequestParam { OpAttrMask = Interop.Ucp.OP_ATTR_FIELD_FLAGS, Flags = Interop.Ucp.EP_CLOSE_FLAG_FORCE };
        void* request = Interop.Ucp.ucp_ep_close_nbx(value, &parameters);
        if (Interop.Ucp.IsRequest(request))
        {
            Interop.Ucp.ucp_request_free(request);
        }

        return true;
    }
}
