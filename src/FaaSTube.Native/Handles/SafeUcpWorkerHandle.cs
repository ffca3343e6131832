namespace FaaSTube.Native.Handles;

/// <summary>
/// A UCP worker (ucp_worker_destroy on release, which also destroys endpoints still open in it).
/// Endpoints and listeners hold a reference to it.
/// </summary>
internal sealed unsafe class SafeUcpWorkerHandle : SafeUcpChildHandle
{
    private SafeUcpWorkerHandle(SafeUcpContextHandle context)
        : base(context)
    {
    }

    /// <summary>
    /// A worker whose event descriptor wakes on <paramref name="events"/> (UCP_WAKEUP_*). The
    /// thread mode is UCS_THREAD_MODE_MULTI unless <paramref name="singleThread"/>: one thread
    /// drives it, but a handle released by the finalizer or a wake-up from another thread stays safe.
    /// </summary>
    public static SafeUcpWorkerHandle Create(SafeUcpContextHandle context, uint events, bool singleThread = false, ulong clientId = 0)
    {
        var result = new SafeUcpWorkerHandle(context);
        try
        {
            var parameters = new UcpWorkerParams
            {
                FieldMask = Interop.Ucp.WORKER_PARAM_FIELD_THREAD_MODE | Interop.Ucp.WORKER_PARAM_FIELD_EVENTS,
                ThreadMode = singleThread ? Interop.Ucp.THREAD_MODE_SINGLE : Interop.Ucp.THREAD_MODE_MULTI,
                Events = events,
            };
            if (clientId != 0)
            {
                parameters.FieldMask |= Interop.Ucp.WORKER_PARAM_FIELD_CLIENT_ID; // what a listener sees of this worker's connection requests
                parameters.ClientId = clientId;
            }

            nint worker;
            UcxException.ThrowIfFailed(Interop.Ucp.ucp_worker_create(context.DangerousGetHandle(), &parameters, &worker));
            result.Attach(worker);
            return result;
        }
        finally
        {
            result.AbandonUnattached();
        }
    }

    protected override bool Free(nint value, nint parent)
    {
        Interop.Ucp.ucp_worker_destroy(value);
        return true;
    }
}
