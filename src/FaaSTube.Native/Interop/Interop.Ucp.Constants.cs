namespace FaaSTube.Native;

internal static partial class Interop
{
    internal static partial class Ucp
    {
        // The API version this binding was written against (ucp/api/ucp_version.h): ucp_init is an
        // inline wrapper that passes these to ucp_init_version.
        internal const uint ApiMajor = 1;
        internal const uint ApiMinor = 13;

        // enum ucp_params_field
        internal const ulong PARAM_FIELD_FEATURES = 1UL << 0;
        internal const ulong PARAM_FIELD_REQUEST_SIZE = 1UL << 1;
        internal const ulong PARAM_FIELD_REQUEST_INIT = 1UL << 2;
        internal const ulong PARAM_FIELD_REQUEST_CLEANUP = 1UL << 3;
        internal const ulong PARAM_FIELD_TAG_SENDER_MASK = 1UL << 4;
        internal const ulong PARAM_FIELD_MT_WORKERS_SHARED = 1UL << 5;
        internal const ulong PARAM_FIELD_ESTIMATED_NUM_EPS = 1UL << 6;
        internal const ulong PARAM_FIELD_ESTIMATED_NUM_PPN = 1UL << 7;
        internal const ulong PARAM_FIELD_NAME = 1UL << 8;

        // enum ucp_feature
        internal const ulong FEATURE_TAG = 1UL << 0;
        internal const ulong FEATURE_RMA = 1UL << 1;
        internal const ulong FEATURE_WAKEUP = 1UL << 4;
        internal const ulong FEATURE_STREAM = 1UL << 5;
        internal const ulong FEATURE_AM = 1UL << 6;

        // enum ucp_worker_params_field
        internal const ulong WORKER_PARAM_FIELD_THREAD_MODE = 1UL << 0;
        internal const ulong WORKER_PARAM_FIELD_CPU_MASK = 1UL << 1;
        internal const ulong WORKER_PARAM_FIELD_EVENTS = 1UL << 2;
        internal const ulong WORKER_PARAM_FIELD_USER_DATA = 1UL << 3;
        internal const ulong WORKER_PARAM_FIELD_EVENT_FD = 1UL << 4;
        internal const ulong WORKER_PARAM_FIELD_FLAGS = 1UL << 5;
        internal const ulong WORKER_PARAM_FIELD_NAME = 1UL << 6;
        internal const ulong WORKER_PARAM_FIELD_AM_ALIGNMENT = 1UL << 7;
        internal const ulong WORKER_PARAM_FIELD_CLIENT_ID = 1UL << 8;

        // ucs_thread_mode_t (ucs/type/thread_mode.h)
        internal const int THREAD_MODE_SINGLE = 0;
        internal const int THREAD_MODE_SERIALIZED = 1;
        internal const int THREAD_MODE_MULTI = 2;

        // ucp_wakeup_event_t
        internal const uint WAKEUP_TAG_SEND = 1U << 2;
        internal const uint WAKEUP_TAG_RECV = 1U << 3;
        internal const uint WAKEUP_TX = 1U << 10;
        internal const uint WAKEUP_RX = 1U << 11;
        internal const uint WAKEUP_EDGE = 1U << 16;

        // enum ucp_listener_params_field
        internal const ulong LISTENER_PARAM_FIELD_SOCK_ADDR = 1UL << 0;
        internal const ulong LISTENER_PARAM_FIELD_ACCEPT_HANDLER = 1UL << 1;
        internal const ulong LISTENER_PARAM_FIELD_CONN_HANDLER = 1UL << 2;

        // enum ucp_listener_attr_field, ucp_conn_request_attr_field
        internal const ulong LISTENER_ATTR_FIELD_SOCKADDR = 1UL << 0;
        internal const ulong CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR = 1UL << 0;
        internal const ulong CONN_REQUEST_ATTR_FIELD_CLIENT_ID = 1UL << 1;

        // enum ucp_ep_params_field
        internal const ulong EP_PARAM_FIELD_REMOTE_ADDRESS = 1UL << 0;
        internal const ulong EP_PARAM_FIELD_ERR_HANDLING_MODE = 1UL << 1;
        internal const ulong EP_PARAM_FIELD_ERR_HANDLER = 1UL << 2;
        internal const ulong EP_PARAM_FIELD_USER_DATA = 1UL << 3;
        internal const ulong EP_PARAM_FIELD_SOCK_ADDR = 1UL << 4;
        internal const ulong EP_PARAM_FIELD_FLAGS = 1UL << 5;
        internal const ulong EP_PARAM_FIELD_CONN_REQUEST = 1UL << 6;
        internal const ulong EP_PARAM_FIELD_NAME = 1UL << 7;

        // enum ucp_ep_params_flags_field
        internal const uint EP_PARAMS_FLAGS_CLIENT_SERVER = 1U << 0;
        internal const uint EP_PARAMS_FLAGS_NO_LOOPBACK = 1U << 1;
        internal const uint EP_PARAMS_FLAGS_SEND_CLIENT_ID = 1U << 2;

        // ucp_err_handling_mode_t
        internal const int ERR_HANDLING_MODE_NONE = 0;
        internal const int ERR_HANDLING_MODE_PEER = 1;

        // enum ucp_ep_close_flags_t (in ucp_request_param_t.flags with OP_ATTR_FIELD_FLAGS)
        internal const uint EP_CLOSE_FLAG_FORCE = 1U << 0;

        // ucp_op_attr_t
        internal const uint OP_ATTR_FIELD_REQUEST = 1U << 0;
        internal const uint OP_ATTR_FIELD_CALLBACK = 1U << 1;
        internal const uint OP_ATTR_FIELD_USER_DATA = 1U << 2;
        internal const uint OP_ATTR_FIELD_DATATYPE = 1U << 3;
        internal const uint OP_ATTR_FIELD_FLAGS = 1U << 4;
        internal const uint OP_ATTR_FIELD_REPLY_BUFFER = 1U << 5;
        internal const uint OP_ATTR_FIELD_MEMORY_TYPE = 1U << 6;
        internal const uint OP_ATTR_FIELD_RECV_INFO = 1U << 7;
        internal const uint OP_ATTR_FIELD_MEMH = 1U << 8;
        internal const uint OP_ATTR_FLAG_NO_IMM_CMPL = 1U << 16;
        internal const uint OP_ATTR_FLAG_FAST_CMPL = 1U << 17;
        internal const uint OP_ATTR_FLAG_FORCE_IMM_CMPL = 1U << 18;

        // enum ucp_mem_map_params_field, ucp_mem_map flags and protections
        internal const ulong MEM_MAP_PARAM_FIELD_ADDRESS = 1UL << 0;
        internal const ulong MEM_MAP_PARAM_FIELD_LENGTH = 1UL << 1;
        internal const ulong MEM_MAP_PARAM_FIELD_FLAGS = 1UL << 2;
        internal const ulong MEM_MAP_PARAM_FIELD_PROT = 1UL << 3;
        internal const ulong MEM_MAP_PARAM_FIELD_MEMORY_TYPE = 1UL << 4;
        internal const uint MEM_MAP_NONBLOCK = 1U << 0;
        internal const uint MEM_MAP_ALLOCATE = 1U << 1;
        internal const uint MEM_MAP_PROT_LOCAL_READ = 1U << 0;
        internal const uint MEM_MAP_PROT_LOCAL_WRITE = 1U << 1;
        internal const uint MEM_MAP_PROT_REMOTE_READ = 1U << 8;
        internal const uint MEM_MAP_PROT_REMOTE_WRITE = 1U << 9;

        // ucs_memory_type_t (ucs/memory/memory_type.h)
        internal const int MEMORY_TYPE_HOST = 0;

        // enum ucp_am_handler_param_field, ucp_am_cb_flags, ucp_send_am_flags, ucp_am_recv_attr_t
        internal const ulong AM_HANDLER_PARAM_FIELD_ID = 1UL << 0;
        internal const ulong AM_HANDLER_PARAM_FIELD_FLAGS = 1UL << 1;
        internal const ulong AM_HANDLER_PARAM_FIELD_CB = 1UL << 2;
        internal const ulong AM_HANDLER_PARAM_FIELD_ARG = 1UL << 3;
        internal const uint AM_FLAG_WHOLE_MSG = 1U << 0;
        internal const uint AM_FLAG_PERSISTENT_DATA = 1U << 1;
        internal const uint AM_SEND_FLAG_REPLY = 1U << 0;
        internal const uint AM_SEND_FLAG_EAGER = 1U << 1;
        internal const uint AM_SEND_FLAG_RNDV = 1U << 2;
        internal const ulong AM_RECV_ATTR_FIELD_REPLY_EP = 1UL << 0;
        internal const ulong AM_RECV_ATTR_FLAG_DATA = 1UL << 16;
        internal const ulong AM_RECV_ATTR_FLAG_RNDV = 1UL << 17;

        /// <summary>ucp_dt_make_contig(1): bytes, the default datatype.</summary>
        internal const ulong DATATYPE_CONTIG_BYTES = (1UL << 3) | 0;

        /// <summary>
        /// UCS_PTR_IS_PTR of a <c>ucs_status_ptr_t</c>: a request handle, not a status. The
        /// statuses a pointer can carry are 0 (done at once) and the errors down to UCS_ERR_LAST.
        /// </summary>
        internal static unsafe bool IsRequest(void* statusPtr) => (nuint)statusPtr - 1 < unchecked((nuint)(nint)UcsStatus.ErrLast) - 1;

        /// <summary>UCS_PTR_STATUS: UCS_INPROGRESS for a request handle, else the status the pointer carries.</summary>
        internal static unsafe UcsStatus StatusOf(void* statusPtr) =>
            IsRequest(statusPtr) ? UcsStatus.InProgress : (UcsStatus)(sbyte)(nint)statusPtr;
    }
}
