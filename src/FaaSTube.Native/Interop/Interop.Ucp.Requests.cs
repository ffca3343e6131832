using System.Runtime.InteropServices;

namespace FaaSTube.Native;

internal static unsafe partial class Interop
{
    /// <summary>
    /// UCP operations: tagged and active-message sends and receives (the <c>_nbx</c> forms, each
    /// taking a <see cref="UcpRequestParam"/>), requests, and registered memory.
    /// </summary>
    internal static partial class Ucp
    {
        // Tagged messages
        [LibraryImport(Lib)] internal static partial void* ucp_tag_send_nbx(nint endpoint, void* buffer, nuint count, ulong tag, UcpRequestParam* parameters);
        [LibraryImport(Lib)] internal static partial void* ucp_tag_recv_nbx(nint worker, void* buffer, nuint count, ulong tag, ulong tagMask, UcpRequestParam* parameters);

        // Active messages
        [LibraryImport(Lib)] internal static partial UcsStatus ucp_worker_set_am_recv_handler(nint worker, UcpAmHandlerParam* parameters);
        [LibraryImport(Lib)] internal static partial void* ucp_am_send_nbx(nint endpoint, uint id, void* header, nuint headerLength, void* buffer, nuint count, UcpRequestParam* parameters);
        [LibraryImport(Lib)] internal static partial void* ucp_am_recv_data_nbx(nint worker, void* dataDescriptor, void* buffer, nuint count, UcpRequestParam* parameters);
        [LibraryImport(Lib)] internal static partial void ucp_am_data_release(nint worker, void* data);

        // Requests
        [LibraryImport(Lib)] internal static partial UcsStatus ucp_request_check_status(void* request);
        [LibraryImport(Lib)] internal static partial void ucp_request_cancel(nint worker, void* request);
        [LibraryImport(Lib)] internal static partial void ucp_request_free(void* request);

        // Registered memory
        [LibraryImport(Lib)] internal static partial UcsStatus ucp_mem_map(nint context, UcpMemMapParams* parameters, nint* memh);
        [LibraryImport(Lib)] internal static partial UcsStatus ucp_mem_unmap(nint context, nint memh);
    }

    /// <summary>libucs: the status strings.</summary>
    internal static partial class Ucs
    {
        [LibraryImport(UcxLibrary.UcsName)] internal static partial byte* ucs_status_string(UcsStatus status);
    }
}
