using System.Net;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using FaaSTube.Native.Handles;

namespace FaaSTube.Native.Ucx;

/// <summary>
/// A UCP listener on a socket address: each connection request is handed out by
/// <see cref="AcceptAsync"/> as a <see cref="UcxConnectionRequest"/>, which its taker accepts on a
/// worker of its choice (of the same context) or rejects (ucp_listener_reject): the listener's own
/// worker only listens. Port 0 picks a free port; <see cref="LocalEndPoint"/> says which (ucp_listener_query).
/// </summary>
internal sealed unsafe class UcxListener
{
    private readonly Channel<UcxConnectionRequest> _accepted = Channel.CreateUnbounded<UcxConnectionRequest>();
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

    /// <summary>The next connection request (to accept or reject); fails with <see cref="ChannelClosedException"/> once the listener is closed.</summary>
    public ValueTask<UcxConnectionRequest> AcceptAsync(CancellationToken cancellationToken = default) => _accepted.Reader.ReadAsync(cancellationToken);

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
        while (_accepted.Reader.TryRead(out var request))
        {
            request.Forget();
        }

        Worker.Remove(this);
    }

    private void AcceptOnWorker(nint connectionRequest)
    {
        if (_handle is null)
        {
            return;
        }

        var attr = new UcpConnRequestAttr { FieldMask = Interop.Ucp.CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR | Interop.Ucp.CONN_REQUEST_ATTR_FIELD_CLIENT_ID };
        IPEndPoint? client = null;
        try
        {
            client = Interop.Ucp.ucp_conn_request_query(connectionRequest, &attr) == UcsStatus.Ok
                ? UcxSocketAddress.FromNative(new ReadOnlySpan<byte>(attr.ClientAddress, 128))
                : null;
        }
        catch (Exception e)
        {
            UcxWorker.ReportCallbackFailure(e);
        }

        if (!_accepted.Writer.TryWrite(new UcxConnectionRequest(this, connectionRequest, client, attr.ClientId)))
        {
            RejectOnWorker(connectionRequest);
        }
    }

    /// <summary>On the progress thread: refuses a connection request (the client's endpoint fails); nothing once the listener is gone.</summary>
    internal void RejectOnWorker(nint connectionRequest)
    {
        if (_handle is { } handle)
        {
            _ = Interop.Ucp.ucp_listener_reject(handle.DangerousGetHandle(), connectionRequest);
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

/// <summary>
/// A client's connection request to a <see cref="UcxListener"/>: accepted once, on any worker of the
/// listener's context (ucp_ep_create with the request, on that worker's thread), or rejected.
/// </summary>
internal sealed class UcxConnectionRequest
{
    private readonly UcxListener _listener;
    private readonly nint _request;
    private int _taken;

    internal UcxConnectionRequest(UcxListener listener, nint request, IPEndPoint? client, ulong clientId)
    {
        _listener = listener;
        _request = request;
        Client = client;
        ClientId = clientId;
    }

    /// <summary>The client worker's id, when its endpoint sent it (UCP_EP_PARAMS_FLAGS_SEND_CLIENT_ID); 0 otherwise.</summary>
    public ulong ClientId { get; }

    /// <summary>The client's address, when UCX told it.</summary>
    public IPEndPoint? Client { get; }

    /// <summary>Creates the server's endpoint on <paramref name="worker"/> (a worker of the listener's context); it then lives and fails with that worker.</summary>
    public Task<UcxEndpoint> AcceptAsync(UcxWorker worker)
    {
        Take();
        return worker.InvokeAsync(() => UcxEndpoint.Accept(worker, _request, Client));
    }

    /// <summary>Refuses the connection (ucp_listener_reject, on the listener's thread): no endpoint is made for it.</summary>
    public void Reject()
    {
        Take();
        _listener.Worker.TryPost(() => _listener.RejectOnWorker(_request));
    }

    /// <summary>On the listener's thread, as it closes: nobody took the request; the listener's end disposes of it.</summary>
    internal void Forget() => Interlocked.Exchange(ref _taken, 1);

    private void Take()
    {
        if (Interlocked.Exchange(ref _taken, 1) != 0)
        {
            throw new InvalidOperationException("The connection request was already accepted or rejected.");
        }
    }
}
