using System.Runtime.InteropServices;

namespace FaaSTube.Native;

// The UCP structures and field masks of UCX 1.13 (ucp/api/ucp.h, ucp/api/ucp_def.h,
// ucs/config/types.h), LP64 layouts, blittable. Every structure starts with a field mask: UCX
// reads only the fields whose bits are set, which is how newer UCX releases stay compatible with
// this layout. Sizes and offsets are checked in tests/FaaSTube.Tests/Native/UcxLayoutTests.cs.

/// <summary>ucp_params_t (80 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct UcpParams
{
    public ulong FieldMask;
    public ulong Features;
    public nuint RequestSize;
    public nint RequestInit;
    public nint RequestCleanup;
    public ulong TagSenderMask;
    public int MtWorkersShared;
    public nuint EstimatedNumEps;
    public nuint EstimatedNumPpn;
    public byte* Name;
}

/// <summary>ucp_worker_params_t (200 bytes; cpu_mask is ucs_cpu_set_t, 1024 bits).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct UcpWorkerParams
{
    public ulong FieldMask;
    public int ThreadMode;
    public fixed ulong CpuMask[16];
    public uint Events;
    public void* UserData;
    public int EventFd;
    public ulong Flags;
    public byte* Name;
    public nuint AmAlignment;
    public ulong ClientId;
}

/// <summary>ucs_sock_addr_t: a struct sockaddr pointer and its length (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct UcsSockAddr
{
    public byte* Addr;
    public uint AddrLen;
}

/// <summary>ucp_err_handler_t: void (*cb)(void *arg, ucp_ep_h ep, ucs_status_t status) and its argument.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct UcpErrHandler
{
    public delegate* unmanaged<nint, nint, UcsStatus, void> Callback;
    public nint Arg;
}

/// <summary>ucp_ep_params_t (104 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct UcpEpParams
{
    public ulong FieldMask;
    public nint Address;
    public int ErrMode;
    public UcpErrHandler ErrHandler;
    public void* UserData;
    public uint Flags;
    public UcsSockAddr SockAddr;
    public nint ConnRequest;
    public byte* Name;
    public UcsSockAddr LocalSockAddr;
}

/// <summary>ucp_listener_conn_handler_t: void (*cb)(ucp_conn_request_h, void *arg) and its argument.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct UcpListenerConnHandler
{
    public delegate* unmanaged<nint, nint, void> Callback;
    public nint Arg;
}

/// <summary>ucp_listener_accept_handler_t: void (*cb)(ucp_ep_h, void *arg) and its argument.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct UcpListenerAcceptHandler
{
    public delegate* unmanaged<nint, nint, void> Callback;
    public nint Arg;
}

/// <summary>ucp_listener_params_t (56 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct UcpListenerParams
{
    public ulong FieldMask;
    public UcsSockAddr SockAddr;
    public UcpListenerAcceptHandler AcceptHandler;
    public UcpListenerConnHandler ConnHandler;
}

/// <summary>ucp_listener_attr_t (136 bytes): the address the listener is bound to, as a sockaddr_storage.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct UcpListenerAttr
{
    public ulong FieldMask;
    public fixed byte SockAddr[128];
}

/// <summary>ucp_conn_request_attr_t (144 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct UcpConnRequestAttr
{
    public ulong FieldMask;
    public fixed byte ClientAddress[128];
    public ulong ClientId;
}

/// <summary>ucp_mem_map_params_t (40 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct UcpMemMapParams
{
    public ulong FieldMask;
    public void* Address;
    public nuint Length;
    public uint Flags;
    public uint Prot;
    public int MemoryType;
}

/// <summary>ucp_tag_recv_info_t (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct UcpTagRecvInfo
{
    public ulong SenderTag;
    public nuint Length;
}

/// <summary>
/// ucp_request_param_t (72 bytes). <see cref="Callback"/> is the <c>cb</c> union (send, tag
/// receive, stream receive, AM data receive: all function pointers); <see cref="RecvInfo"/> the
/// <c>recv_info</c> union (a <c>size_t*</c> or a <see cref="UcpTagRecvInfo"/>*).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct UcpRequestParam
{
    public uint OpAttrMask;
    public uint Flags;
    public void* Request;
    public nint Callback;
    public ulong Datatype;
    public void* UserData;
    public void* ReplyBuffer;
    public int MemoryType;
    public void* RecvInfo;
    public nint Memh;
}

/// <summary>ucp_am_handler_param_t (32 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct UcpAmHandlerParam
{
    public ulong FieldMask;
    public uint Id;
    public uint Flags;
    /// <summary>ucs_status_t (*)(void *arg, const void *header, size_t header_length, void *data, size_t length, const ucp_am_recv_param_t *param).</summary>
    public delegate* unmanaged<nint, void*, nuint, void*, nuint, UcpAmRecvParam*, UcsStatus> Callback;
    public nint Arg;
}

/// <summary>ucp_am_recv_param_t (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct UcpAmRecvParam
{
    public ulong RecvAttr;
    public nint ReplyEp;
}
