using System.Runtime.InteropServices;

namespace FaaSTube.Native.Handles;

/// <summary>
/// A UCP context (ucp_init_version; ucp_cleanup on release). Workers and memory handles made in
/// it add a reference (<see cref="SafeUcpChildHandle"/>), so it is cleaned up after the last of them.
/// </summary>
internal sealed unsafe class SafeUcpContextHandle : SafeHandle
{
    private SafeUcpContextHandle()
        : base(0, ownsHandle: true)
    {
    }

    public override bool IsInvalid => handle == 0;

    /// <summary>
    /// Reads UCX's configuration (its UCX_* environment), applies <paramref name="settings"/>
    /// (names without the UCX_ prefix, e.g. TLS=tcp) and creates a context with <paramref name="features"/>.
    /// </summary>
    public static SafeUcpContextHandle Create(ulong features, IReadOnlyDictionary<string, string>? settings = null, bool workersOnSeveralThreads = true)
    {
        UcxLibrary.ThrowIfUnavailable();
        nint config;
        UcxException.ThrowIfFailed(Interop.Ucp.ucp_config_read(null, null, &config));
        try
        {
            foreach (var (name, value) in settings ?? new Dictionary<string, string>())
            {
                var status = Interop.Ucp.ucp_config_modify(config, name, value);
                if (status < 0)
                {
                    throw new UcxException(status, $"ucp_config_modify({name}={value})");
                }
            }

            var parameters = new UcpParams
            {
                FieldMask = Interop.Ucp.PARAM_FIELD_FEATURES | Interop.Ucp.PARAM_FIELD_MT_WORKERS_SHARED,
                Features = features,
                MtWorkersShared = workersOnSeveralThreads ? 1 : 0,
            };
            var result = new SafeUcpContextHandle();
            nint context;
            UcxException.ThrowIfFailed(Interop.Ucp.ucp_init_version(Interop.Ucp.ApiMajor, Interop.Ucp.ApiMinor, &parameters, config, &context));
            result.SetHandle(context);
            return result;
        }
        finally
        {
            Interop.Ucp.ucp_config_release(config);
        }
    }

    protected override bool ReleaseHandle()
    {
        Interop.Ucp.ucp_cleanup(handle);
        return true;
    }
}
