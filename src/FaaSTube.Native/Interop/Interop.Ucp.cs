using System.Runtime.InteropServices;

namespace FaaSTube.Native;

/// <summary>
/// UCX's UCP API (libucp), source-generated and blittable. UCP objects (context, config, worker,
/// endpoint, listener, memory handle, connection request, request) are <c>nint</c> or
/// <c>void*</c>; <c>ucs_status_ptr_t</c> results are <c>void*</c>, read with
/// <see cref="Ucp.IsRequest"/> and <see cref="Ucp.StatusOf"/>. This file holds configuration,
/// contexts, workers, listeners and endpoints; Interop.Ucp.Requests.cs the operations.
/// </summary>
internal static unsafe partial class Interop
{
    internal static partial class Ucp
    {
        private const string Lib = UcxLibrary.UcpName;

        // Configuration and version
        [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial UcsStatus ucp_config_read(string? envPrefix, string? filename, nint* config);
        [LibraryImport(Lib)] internal static partial void ucp_config_release(nint config);
        [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial UcsStatus ucp_config_modify(nint config, string name, string value);
        [LibraryImport(Lib)] internal static partial void ucp_get_version(uint* major, uint* minor, uint* release);
        [LibraryImport(Lib)] internal static partial byte* ucp_get_version_string();

        // Contexts (ucp_init is an inline wrapper of ucp_init_version in ucp.h)
        [LibraryImport(Lib)] internal static partial UcsStatus ucp_init_version(uint apiMajor, uint apiMinor, UcpParams* parameters, nint config, nint* context);
        [LibraryImport(Lib)] internal static partial void ucp_cleanup(nint context);

        // Workers
        [LibraryImport(Lib)] internal static partial UcsStatus ucp_worker_create(nint context, UcpWorkerParams* parameters, nint* worker);
        [LibraryImport(Lib)] internal static partial void ucp_worker_destroy(nint worker);
        [LibraryImport(Lib)] internal static partial uint ucp_worker_progress(nint worker);
        [LibraryImport(Lib)] internal static partial UcsStatus ucp_worker_get_efd(nint worker, int* fd);
        [LibraryImport(Lib)] internal static partial UcsStatus ucp_worker_arm(nint worker);
        [LibraryImport(Lib)] internal static partial UcsStatus ucp_worker_signal(nint worker);
        [LibraryImport(Lib)] internal static partial UcsStatus ucp_worker_get_address(nint worker, nint* address, nuint* length);
        [LibraryImport(Lib)] internal static partial void ucp_worker_release_address(nint worker, nint address);

        // Listeners (the client-server connection flow over socket addresses)
        [LibraryImport(Lib)] internal static partial UcsStatus ucp_listener_create(nint worker, UcpListenerParams* parameters, nint* listener);
        [LibraryImport(Lib)] internal static partial void ucp_listener_destroy(nint listener);
        [LibraryImport(Lib)] internal static partial UcsStatus ucp_listener_query(nint listener, UcpListenerAttr* attr);
        [LibraryImport(Lib)] internal static partial UcsStatus ucp_listener_reject(nint listener, nint connRequest);
        [LibraryImport(Lib)] internal static partial UcsStatus ucp_conn_request_query(nint connRequest, UcpConnRequestAttr* attr);

        // Endpoints
        [LibraryImport(Lib)] internal static partial UcsStatus ucp_ep_create(nint worker, UcpEpParams* parameters, nint* endpoint);
        [LibraryImport(Lib)] internal static partial void* ucp_ep_close_nbx(nint endpoint, UcpRequestParam* parameters);
        [LibraryImport(Lib)] internal static partial void* ucp_ep_flush_nbx(nint endpoint, UcpRequestParam* parameters);
    }
}
