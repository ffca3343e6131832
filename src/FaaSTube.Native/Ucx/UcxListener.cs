using System.Net;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using FaaSTube.Native.Handles;

namespace FaaSTube.Native.Ucx;

/// <summary>
/// A UCP listener on a socket address: each connection request becomes an accepted
/// <see cref="UcxEndpoint"/>, handed out by <see cref="AcceptAsync"/>. Port 0 picks a free port;
/// <see cref="LocalEndPoint"/> says which (ucp_listener_query).
/// </summary>
internal sealed unsafe class UcxListener
{
    private readonly Channel<UcxEndpoint> _accepted = Channel.CreateUnbounded<UcxEndpoint>();
    private SafeUcpListenerHandle? _handle;
    private GCHandle _self;

    private UcxListener(UcxWorker worker) => Worker = worker;

    public UcxWorker Worker { get; }

    public IPEndPoint LocalEndPoint { get; private set; } = new(IPAddress.None, 0);

    public static Task<UcxListener> ListenAsync(UcxWorker worker, IPEndPoint at)
    {
        byte[] sockaddr = UcxSocketAddress.ToNative(at);
        return worker.InvokeAsync(() =>
        {
            var listener = new UcxListener(worker);
            listener._self = GCHandle.Alloc(listener);
            try
            {
                fixed (byte* address = sockaddr)
                {
                    var parameters = new UcpListenerParams
                    {
                        FieldMask = Interop.Ucp.LISTENER_PARAM_FIELD_SOCK_ADDR | Interop.Ucp.LISTENER_PARAM_FIELD_CONN_HANDLER,
                        SockAddr = new UcsSockAddr { Addr = address, AddrLen = (uint)sockaddr.Length },
                        ConnHandler = new UcpListenerConnHandler { Callback = &OnConnection, Arg = GCHandle.ToIntPtr(listener._self) },
                    };
                    listener._handle = SafeUcpListenerHandle.Create(worker.Handle, ref parameters);
                }

                var attr = new UcpListenerAttr { FieldMask = Interop.Ucp.LISTENER_ATTR_FIELD_SOCKADDR };
                UcxException.ThrowIfFailed(Interop.Ucp.ucp_listener_query(listener._handle.DangerousGetHandle(), &attr));
                listener.LocalEndPoint = UcxSocketAddress.FromNative(new ReadOnlySpan<byte>(attr.SockAddr, 128));
            }
            catch
            {
                listener.CloseOnWorker();
                throw;
            }

            worker.Add(listener);
            return listener;
        });
    }

    /// <summary>The next accepted endpoint; fails with <see cref="ChannelClosedException"/> once the listener is closed.</summary>
    public ValueTask<UcxEndpoint> AcceptAsync(CancellationToken cancellationToken = default) => _accepted.Reader.ReadAsync(cancellationToken);

    public Task CloseAsync() => Worker.InvokeAsync(() =>
    {
        CloseOnWorker();
        return true;
    });

    /// <summary>On the progress thread: destroys the listener (no more connection callbacks) and ends the accept queue.</summary>
    internal void CloseOnWorker()
    {
        _handle?.Dispose();
        _handle = null;
        if (_self.IsAllocated)
        {
            _self.Free();
        }

        _accepted.Writer.TryComplete();
        Worker.Remove(this);
    }

    private void AcceptOnWorker(nint connectionRequest)
    {
        if (_handle is null)
        {
            return;
        }

        try
        {
            var attr = new UcpConnRequestAttr { FieldMask = Interop.Ucp.CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR };
            IPEndPoint? client = Interop.Ucp.ucp_conn_request_query(connectionRequest, &attr) == UcsStatus.Ok
                ? UcxSocketAddress.FromNative(new ReadOnlySpan<byte>(attr.ClientAddress, 128))
                : null;
            _accepted.Writer.TryWrite(UcxEndpoint.Accept(Worker, connectionRequest, client));
        }
        catch (Exception e)
        {
            _ = Interop.Ucp.ucp_listener_reject(_handle.DangerousGetHandle(), connectionRequest);
            UcxWorker.ReportCallbackFailure(e);
        }
    }

    /// <summary>ucp_listener_conn_callback_t: a client asks to connect; accepted on the progress thread after this returns.</summary>
    [UnmanagedCallersOnly]
    private static void OnConnection(nint connectionRequest, nint arg)
    {
        try
        {
            var self = (UcxListener)GCHandle.FromIntPtr(arg).Target!;
            self.Worker.TryPost(() => self.AcceptOnWorker(connectionRequest));
        }
        catch (Exception e)
        {
            UcxWorker.ReportCallbackFailure(e);
        }
    }
}
