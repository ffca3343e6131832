using System.Net;
using System.Runtime.InteropServices;
using FaaSTube.Native.Handles;

namespace FaaSTube.Native.Ucx;

/// <summary>
/// A connection to a peer worker: created by <see cref="ConnectAsync(UcxWorker, IPEndPoint, bool)"/> (a client, by socket
/// address) or accepted by a <see cref="UcxListener"/>. Endpoints use peer error handling: when the
/// peer goes away UCX calls <see cref="OnError"/>, sends on the endpoint fail, the receives tied to
/// it (<see cref="ReceiveAsync"/>) are cancelled with the same error, and it is closed by force.
/// State changes happen on the worker's progress thread only.
/// </summary>
internal sealed unsafe class UcxEndpoint
{
    private readonly HashSet<UcxOperation> _pending = [];
    private readonly TaskCompletionSource<Exception> _failed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private SafeUcpEndpointHandle? _handle;
    private GCHandle _self;
    private int _selfFreed;

    private UcxEndpoint(UcxWorker worker, IPEndPoint? peer)
    {
        Worker = worker;
        Peer = peer;
    }

    public UcxWorker Worker { get; }

    /// <summary>The address connected to, or the client's address for an accepted endpoint.</summary>
    public IPEndPoint? Peer { get; }

    /// <summary>Why the endpoint can no longer be used (peer failure, close, worker disposal); null while it can.</summary>
    public Exception? Failure { get; private set; }

    /// <summary>Completes with the reason once the endpoint fails or is closed.</summary>
    public Task<Exception> Failed => _failed.Task;

    /// <summary>Connects to a listener at <paramref name="remote"/> (the client-server flow; the connection completes in the background, sends queue until then).</summary>
    public static Task<UcxEndpoint> ConnectAsync(UcxWorker worker, IPEndPoint remote, bool sendClientId = false)
    {
        byte[] sockaddr = UcxSocketAddress.ToNative(remote);
        return worker.InvokeAsync(() =>
        {
            fixed (byte* address = sockaddr)
            {
                var parameters = new UcpEpParams
                {
                    FieldMask = Interop.Ucp.EP_PARAM_FIELD_SOCK_ADDR | Interop.Ucp.EP_PARAM_FIELD_FLAGS,
                    Flags = Interop.Ucp.EP_PARAMS_FLAGS_CLIENT_SERVER | (sendClientId ? Interop.Ucp.EP_PARAMS_FLAGS_SEND_CLIENT_ID : 0),
                    SockAddr = new UcsSockAddr { Addr = address, AddrLen = (uint)sockaddr.Length },
                };
                return CreateOnWorker(worker, ref parameters, remote);
            }
        });
    }

    /// <summary>Connects straight to a worker by its address (<see cref="UcxWorker.GetAddressAsync"/>), without a listener: how any peer that learns a worker's address reaches it.</summary>
    public static Task<UcxEndpoint> ConnectAsync(UcxWorker worker, byte[] workerAddress) => worker.InvokeAsync(() =>
    {
        fixed (byte* address = workerAddress)
        {
            var parameters = new UcpEpParams
            {
                FieldMask = Interop.Ucp.EP_PARAM_FIELD_REMOTE_ADDRESS,
                Address = (nint)address,
            };
            return CreateOnWorker(worker, ref parameters, null);
        }
    });

    /// <summary>On the progress thread: accepts a listener's connection request.</summary>
    internal static UcxEndpoint Accept(UcxWorker worker, nint connectionRequest, IPEndPoint? peer)
    {
        var parameters = new UcpEpParams
        {
            FieldMask = Interop.Ucp.EP_PARAM_FIELD_CONN_REQUEST,
            ConnRequest = connectionRequest,
        };
        return CreateOnWorker(worker, ref parameters, peer);
    }

    private static UcxEndpoint CreateOnWorker(UcxWorker worker, ref UcpEpParams parameters, IPEndPoint? peer)
    {
        var endpoint = new UcxEndpoint(worker, peer);
        endpoint._self = GCHandle.Alloc(endpoint);
        parameters.FieldMask |= Interop.Ucp.EP_PARAM_FIELD_ERR_HANDLING_MODE | Interop.Ucp.EP_PARAM_FIELD_ERR_HANDLER;
        parameters.ErrMode = Interop.Ucp.ERR_HANDLING_MODE_PEER;
        parameters.ErrHandler = new UcpErrHandler { Callback = &OnError, Arg = GCHandle.ToIntPtr(endpoint._self) };
        try
        {
            endpoint._handle = SafeUcpEndpointHandle.Create(worker.Handle, ref parameters);
            endpoint.Native = endpoint._handle.DangerousGetHandle();
        }
        catch
        {
            endpoint.FreeSelf();
            throw;
        }

        worker.Add(endpoint);
        return endpoint;
    }

    /// <summary>
    /// Sends <paramref name="data"/> with <paramref name="tag"/>; completes when UCX is done with
    /// the buffer. <paramref name="registered"/> is a registration covering the data (ucp_mem_map),
    /// so UCX need not register it for this send.
    /// </summary>
    public Task SendAsync(ReadOnlyMemory<byte> data, ulong tag, SafeUcpMemoryHandle? registered = null)
    {
        var op = new UcxOperation(Worker, "ucp_tag_send_nbx", this, data.Length, key: UcxOperationKey.Tag, keyValue: tag);
        Worker.Post(() =>
        {
            if (Failure is not null || _handle is null)
            {
                op.Abandon(Failure ?? new ObjectDisposedException(nameof(UcxEndpoint)));
                return;
            }

            Track(op);
            var parameters = new UcpRequestParam
            {
                OpAttrMask = Interop.Ucp.OP_ATTR_FIELD_CALLBACK | Interop.Ucp.OP_ATTR_FIELD_USER_DATA,
                Callback = UcxOperation.SentCallback,
                UserData = op.UserData(),
            };
            if (registered is not null)
            {
                parameters.OpAttrMask |= Interop.Ucp.OP_ATTR_FIELD_MEMH;
                parameters.Memh = registered.DangerousGetHandle();
            }

            void* pointer = op.Pin(data);
            op.Started(Interop.Ucp.ucp_tag_send_nbx(_handle.DangerousGetHandle(), pointer, (nuint)data.Length, tag, &parameters));
        }, op.Abandon);
        return op.Task;
    }

    /// <summary>
    /// Sends an active message: <paramref name="header"/> (small: the whole of a control message)
    /// and <paramref name="data"/> (eager or rendezvous as UCX chooses, unless <paramref name="mode"/>
    /// forces one); with <paramref name="reply"/> the receiver learns this endpoint
    /// (UCP_AM_SEND_FLAG_REPLY). Completes when UCX is done with both buffers.
    /// </summary>
    public Task SendMessageAsync(uint id, ReadOnlyMemory<byte> header, ReadOnlyMemory<byte> data = default, bool reply = false, UcxSendMode mode = UcxSendMode.Auto)
    {
        var op = new UcxOperation(Worker, "ucp_am_send_nbx", this, data.Length, key: UcxOperationKey.MessageId, keyValue: id, headerLength: header.Length);
        Worker.Post(() =>
        {
            if (Failure is not null || _handle is null)
            {
                op.Abandon(Failure ?? new ObjectDisposedException(nameof(UcxEndpoint)));
                return;
            }

            Track(op);
            var parameters = new UcpRequestParam
            {
                OpAttrMask = Interop.Ucp.OP_ATTR_FIELD_CALLBACK | Interop.Ucp.OP_ATTR_FIELD_USER_DATA | Interop.Ucp.OP_ATTR_FIELD_FLAGS,
                Flags = (reply ? Interop.Ucp.AM_SEND_FLAG_REPLY : 0)
                    | (mode == UcxSendMode.Eager ? Interop.Ucp.AM_SEND_FLAG_EAGER : 0)
                    | (mode == UcxSendMode.Rendezvous ? Interop.Ucp.AM_SEND_FLAG_RNDV : 0),
                Callback = UcxOperation.SentCallback,
                UserData = op.UserData(),
            };
            void* h = op.PinHeader(header);
            void* d = op.Pin(data);
            op.Started(Interop.Ucp.ucp_am_send_nbx(_handle.DangerousGetHandle(), id, h, (nuint)header.Length, d, (nuint)data.Length, &parameters));
        }, op.Abandon);
        return op.Task;
    }

    /// <summary>The ucp_ep_h, to compare with an active message's reply endpoint (read on the progress thread); 0 before it exists.</summary>
    internal nint Native { get; private set; }

    /// <summary>A tagged receive that fails when this endpoint fails or closes (see <see cref="UcxWorker.ReceiveAsync"/>).</summary>
    public Task<UcxMessage> ReceiveAsync(Memory<byte> buffer, ulong tag, ulong mask = ulong.MaxValue, CancellationToken cancellationToken = default) =>
        Worker.ReceiveAsync(buffer, tag, mask, this, cancellationToken);

    /// <summary>
    /// Closes the endpoint: receives tied to it fail; with <paramref name="force"/> its sends are
    /// dropped, without it they are flushed first (ucp_ep_flush_nbx, then ucp_ep_close_nbx by force). Completes when UCX has closed it.
    /// </summary>
    public Task CloseAsync(bool force = false)
    {
        var close = new UcxOperation(Worker, "ucp_ep_close_nbx", null, 0);
        Worker.Post(() => FailOnWorker(new ObjectDisposedException(nameof(UcxEndpoint), "The UCX endpoint was closed."), force, close), close.Abandon);
        return close.Task;
    }

    internal void Track(UcxOperation operation)
    {
        operation.Tracked = true;
        _pending.Add(operation);
    }

    internal void Untrack(UcxOperation operation) => _pending.Remove(operation);

    /// <summary>
    /// On the progress thread: records why the endpoint ends, fails the receives tied to it and
    /// closes it (by force after a peer failure, as UCX requires). <paramref name="close"/>, if
    /// given, completes when the close does.
    /// </summary>
    internal void FailOnWorker(Exception reason, bool force, UcxOperation? close = null)
    {
        if (Failure is null)
        {
            Failure = reason;
            _failed.TrySetResult(reason);
        }

        foreach (var op in _pending.ToArray())
        {
            if (op.IsReceive)
            {
                op.Cancel(Failure);
            }
        }

        close ??= new UcxOperation(Worker, "ucp_ep_close_nbx", null, 0);
        _ = close.Task.ContinueWith(static (_, state) => ((UcxEndpoint)state!).FreeSelf(), this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        var handle = _handle;
        if (handle is null)
        {
            close.Started(null);
            return;
        }

        if (!force)
        {
            // Graceful: flush (ucp_ep_flush_nbx), then close by force. The endpoint stays open, and in
            // the worker's list, until the flush ends, so a forced close meanwhile (the caller's
            // timeout, a peer failure, the worker's disposal) still closes it and purges the flush.
            // A graceful ucp_ep_close_nbx still pending as the worker was destroyed made UCX 1.13.1
            // abort the process ("ucp_ep.c:1185 Bug: pending request ... (ucp_ep_flush_progress_pending)
            // on ep ... should have been flushed", in ucp_worker_destroy).
            var flush = new UcxOperation(Worker, "ucp_ep_flush_nbx", this, 0);
            var flushParameters = new UcpRequestParam
            {
                OpAttrMask = Interop.Ucp.OP_ATTR_FIELD_CALLBACK | Interop.Ucp.OP_ATTR_FIELD_USER_DATA,
                Callback = UcxOperation.SentCallback,
                UserData = flush.UserData(),
            };
            flush.Started(Interop.Ucp.ucp_ep_flush_nbx(handle.DangerousGetHandle(), &flushParameters));
            _ = flush.Task.ContinueWith(
                (flushed, state) =>
                {
                    var closing = (UcxOperation)state!;
                    Worker.Post(() => CloseFlushedOnWorker(closing, flushed.Exception?.InnerException), closing.Abandon);
                },
                close,
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
            return;
        }

        CloseOnWorker(handle, force: true, close);
    }

    /// <summary>On the progress thread, once a graceful close's flush ended: closes by force (nothing is left to send), unless that was done meanwhile.</summary>
    private void CloseFlushedOnWorker(UcxOperation close, Exception? flushFailure)
    {
        if (_handle is { } handle)
        {
            CloseOnWorker(handle, force: true, close);
        }
        else if (flushFailure is not null)
        {
            close.Abandon(flushFailure);
        }
        else
        {
            close.Started(null);
        }
    }

    /// <summary>On the progress thread: gives the handle up to ucp_ep_close_nbx.</summary>
    private void CloseOnWorker(SafeUcpEndpointHandle handle, bool force, UcxOperation close)
    {
        _handle = null;
        Worker.Remove(this);
        var parameters = new UcpRequestParam
        {
            OpAttrMask = Interop.Ucp.OP_ATTR_FIELD_CALLBACK | Interop.Ucp.OP_ATTR_FIELD_USER_DATA | Interop.Ucp.OP_ATTR_FIELD_FLAGS,
            Flags = force ? Interop.Ucp.EP_CLOSE_FLAG_FORCE : 0,
            Callback = UcxOperation.SentCallback,
            UserData = close.UserData(),
        };
        close.Started(handle.BeginClose(&parameters));
    }

    /// <summary>After the worker was destroyed: nothing of UCX refers to this endpoint any more.</summary>
    internal void Forget()
    {
        _handle?.SetHandleAsInvalid();
        _handle = null;
        FreeSelf();
    }

    private void FreeSelf()
    {
        if (Interlocked.Exchange(ref _selfFreed, 1) == 0 && _self.IsAllocated)
        {
            _self.Free();
        }
    }

    /// <summary>ucp_err_handler_cb_t: the peer failed (or the connection could not be made).</summary>
    [UnmanagedCallersOnly]
    private static void OnError(nint arg, nint endpoint, UcsStatus status)
    {
        try
        {
            var self = (UcxEndpoint)GCHandle.FromIntPtr(arg).Target!;
            var reason = new UcxException(status, $"the UCX endpoint to {self.Peer}");
            self.Worker.TryPost(() => self.FailOnWorker(reason, force: true));
        }
        catch (Exception e)
        {
            UcxWorker.ReportCallbackFailure(e);
        }
    }
}

/// <summary>How an active message's data goes: as UCX chooses by size, or forced.</summary>
internal enum UcxSendMode
{
    /// <summary>Eager below UCX's rendezvous threshold, rendezvous above it.</summary>
    Auto,

    /// <summary>Eager (UCP_AM_SEND_FLAG_EAGER): the bytes go with the message, in fragments if large.</summary>
    Eager,

    /// <summary>Rendezvous (UCP_AM_SEND_FLAG_RNDV): the receiver fetches the bytes if it wants them.</summary>
    Rendezvous,
}
