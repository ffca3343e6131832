using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using FaaSTube.Native;

namespace FaaSTube.Tests.Native;

/// <summary>
/// The UCP structures against UCX 1.13's layouts (x86_64 and aarch64, LP64): sizes and offsets as
/// gcc gives them for Debian's libucx-dev 1.13.1 headers (sizeof/offsetof of each field). No UCX needed.
/// </summary>
[TestClass]
public sealed class UcxLayoutTests
{
    [TestMethod]
    public void Structures_have_the_sizes_of_ucx_1_13()
    {
        Assert.AreEqual(1, Unsafe.SizeOf<UcsStatus>(), "ucs_status_t is a packed enum: one byte");
        Assert.AreEqual(80, Unsafe.SizeOf<UcpParams>());
        Assert.AreEqual(200, Unsafe.SizeOf<UcpWorkerParams>());
        Assert.AreEqual(104, Unsafe.SizeOf<UcpEpParams>());
        Assert.AreEqual(16, Unsafe.SizeOf<UcsSockAddr>());
        Assert.AreEqual(56, Unsafe.SizeOf<UcpListenerParams>());
        Assert.AreEqual(136, Unsafe.SizeOf<UcpListenerAttr>());
        Assert.AreEqual(144, Unsafe.SizeOf<UcpConnRequestAttr>());
        Assert.AreEqual(40, Unsafe.SizeOf<UcpMemMapParams>());
        Assert.AreEqual(16, Unsafe.SizeOf<UcpTagRecvInfo>());
        Assert.AreEqual(72, Unsafe.SizeOf<UcpRequestParam>());
        Assert.AreEqual(32, Unsafe.SizeOf<UcpAmHandlerParam>());
        Assert.AreEqual(16, Unsafe.SizeOf<UcpAmRecvParam>());
    }

    [TestMethod]
    public void Fields_sit_at_the_offsets_of_ucx_1_13()
    {
        AssertOffsets<UcpParams>(("Features", 8), ("RequestSize", 16), ("RequestInit", 24), ("RequestCleanup", 32),
            ("TagSenderMask", 40), ("MtWorkersShared", 48), ("EstimatedNumEps", 56), ("EstimatedNumPpn", 64), ("Name", 72));
        AssertOffsets<UcpWorkerParams>(("ThreadMode", 8), ("CpuMask", 16), ("Events", 144), ("UserData", 152), ("EventFd", 160),
            ("Flags", 168), ("Name", 176), ("AmAlignment", 184), ("ClientId", 192));
        AssertOffsets<UcpEpParams>(("Address", 8), ("ErrMode", 16), ("ErrHandler", 24), ("UserData", 40), ("Flags", 48),
            ("SockAddr", 56), ("ConnRequest", 72), ("Name", 80), ("LocalSockAddr", 88));
        AssertOffsets<UcpListenerParams>(("SockAddr", 8), ("AcceptHandler", 24), ("ConnHandler", 40));
        AssertOffsets<UcpListenerAttr>(("SockAddr", 8));
        AssertOffsets<UcpConnRequestAttr>(("ClientAddress", 8), ("ClientId", 136));
        AssertOffsets<UcpMemMapParams>(("Address", 8), ("Length", 16), ("Flags", 24), ("Prot", 28), ("MemoryType", 32));
        AssertOffsets<UcpTagRecvInfo>(("Length", 8));
        AssertOffsets<UcpRequestParam>(("Flags", 4), ("Request", 8), ("Callback", 16), ("Datatype", 24), ("UserData", 32),
            ("ReplyBuffer", 40), ("MemoryType", 48), ("RecvInfo", 56), ("Memh", 64));
        AssertOffsets<UcpAmHandlerParam>(("Id", 8), ("Flags", 12), ("Callback", 16), ("Arg", 24));
        AssertOffsets<UcpAmRecvParam>(("ReplyEp", 8));
    }

    [TestMethod]
    public unsafe void Status_pointers_read_as_ucs_ptr_is_ptr_and_ucs_ptr_status()
    {
        Assert.IsFalse(Interop.Ucp.IsRequest(null));
        Assert.AreEqual(UcsStatus.Ok, Interop.Ucp.StatusOf(null));
        void* canceled = (void*)(nint)(int)UcsStatus.ErrCanceled;
        Assert.IsFalse(Interop.Ucp.IsRequest(canceled));
        Assert.AreEqual(UcsStatus.ErrCanceled, Interop.Ucp.StatusOf(canceled));
        void* last = (void*)(nint)(int)UcsStatus.ErrLast;
        Assert.IsFalse(Interop.Ucp.IsRequest(last));
        void* request = (void*)(nint)0x12345678;
        Assert.IsTrue(Interop.Ucp.IsRequest(request));
        Assert.AreEqual(UcsStatus.InProgress, Interop.Ucp.StatusOf(request));
    }

    private static void AssertOffsets<T>(params (string Field, int Offset)[] expected)
        where T : struct
    {
        foreach (var (field, offset) in expected)
        {
            Assert.AreEqual(offset, (int)Marshal.OffsetOf<T>(field), $"{typeof(T).Name}.{field}");
        }
    }
}
