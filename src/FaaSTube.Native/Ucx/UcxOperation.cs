using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FaaSTube.Native.Ucx;

/// <summary>What an operation's key is, in its error message.</summary>
internal enum UcxOperationKey
{
    /// <summary>No key.</summary>
    None,

    /// <summary>A tag.</summary>
    Tag,

    /// <summary>An active message's id.</summary>
    MessageId,
}

/// <summary>What a completed tagged receive got: the sender's tag and the bytes written.</summary>
internal readonly record struct UcxMessage(ulong Tag, long Length);

/// <summary>
/// One UCX operation in flight (a send, a receive, an endpoint's close): its task, the pinned
/// buffer, the UCX request while it is pending, and the GCHandle passed as <c>user_data</c>.
/// Started, completed and cancelled on the worker's progress thread only (UCX calls the callbacks
/// below from <c>ucp_worker_progress</c>), so none of it needs a lock. The callbacks are
/// <see cref="UnmanagedCallersOnlyAttribute"/> functions: no delegate to keep alive.
/// </summary>
internal sealed unsafe class UcxOperation
{
    private readonly TaskCompletionSource<UcxMessage> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private MemoryHandle _pin;
    private MemoryHandle _headerPin;
    private GCHandle _self;
    private CancellationTokenRegistration _cancellation;
    private CancellationToken _token;

    private readonly string _call;
    private readonly UcxOperationKey _key;
    private readonly ulong _keyValue;
    private readonly int _headerLength;

    /// <param name="worker">The worker it runs on.</param>
    /// <param name="call">The UCX call, for errors (a constant: the details are formatted only when one is raised).</param>
    /// <param name="endpoint">The endpoint it belongs to, if any.</param>
    /// <param name="length">The data's bytes.</param>
    /// <param name="isReceive">A receive (cancelled with its endpoint).</param>
    /// <param name="key">What <paramref name="keyValue"/> is: a tag, an active message's id, or nothing.</param>
    /// <param name="keyValue">The tag or id.</param>
    /// <param name="headerLength">An active message's header bytes.</param>
    public UcxOperation(UcxWorker worker, string call, UcxEndpoint? endpoint, long length, bool isReceive = false, UcxOperationKey key = UcxOperationKey.None, ulong keyValue = 0, int headerLength = 0)
    {
        IsReceive = isReceive;
        Worker = worker;
        _call = call;
        _key = key;
        _keyValue = keyValue;
        _headerLength = headerLength;
        Endpoint = endpoint;
        Length = length;
    }

    public UcxWorker Worker { get; }

    /// <summary>The call and its arguments, for an error's message (formatted only then: nothing per operation on the hot path).</summary>
    public string What => _key switch
    {
        UcxOperationKey.Tag => $"{_call}(tag 0x{_keyValue:x}, {Length} bytes)",
        UcxOperationKey.MessageId => $"{_call}(id {_keyValue}, {_headerLength} + {Length} bytes)",
        _ when Length > 0 => $"{_call}({Length} bytes)",
        _ => _call,
    };

    /// <summary>The endpoint the operation belongs to (a receive expecting that peer's data, a send, a close).</summary>
    public UcxEndpoint? Endpoint { get; }

    public long Length { get; }

    /// <summary>A receive: cancelled when its endpoint fails or closes (sends are failed by UCX itself).</summary>
    public bool IsReceive { get; }

    public Task<UcxMessage> Task => _completion.Task;

    public bool IsDone { get; private set; }

    /// <summary>
    /// Whether the worker or the endpoint lists the operation (set on the progress thread as it
    /// starts). An operation aborted before it ran (its worker was gone) is in no list: completing it,
    /// on the caller's thread, leaves the lists alone, which only the progress thread touches.
    /// </summary>
    internal bool Tracked { get; set; }

    /// <summary>The UCX request while the operation is pending (null before and after).</summary>
    public void* Request { get; private set; }

    /// <summary>Why a cancelled operation failed when it was cancelled on purpose (peer failure, close, disposal).</summary>
    private Exception? _failWith;

    /// <summary>Pins the buffer the operation reads or writes until it completes.</summary>
    public void* Pin(ReadOnlyMemory<byte> buffer)
    {
        _pin = buffer.Pin();
        return _pin.Pointer;
    }

    /// <summary>Pins an active message's header until the send completes.</summary>
    public void* PinHeader(ReadOnlyMemory<byte> header)
    {
        _headerPin = header.Pin();
        return _headerPin.Pointer;
    }

    /// <summary>Cancels through the worker when <paramref name="token"/> fires (a receive waiting for a message).</summary>
    public void CancelWhen(CancellationToken token)
    {
        if (token.CanBeCanceled)
        {
            _token = token;
            _cancellation = token.UnsafeRegister(static state =>
            {
                var op = (UcxOperation)state!;
                op.Worker.TryPost(() => op.Cancel(null));
            }, this);
        }
    }

    /// <summary>The <c>user_data</c> for the request parameters: a GCHandle to this operation, freed on completion.</summary>
    public void* UserData()
    {
        _self = GCHandle.Alloc(this);
        return (void*)GCHandle.ToIntPtr(_self);
    }

    /// <summary>
    /// Takes the <c>ucs_status_ptr_t</c> an <c>_nbx</c> call returned: a request is pending (the
    /// callback will complete it), anything else is the final status.
    /// </summary>
    public void Started(void* statusPointer, UcpTagRecvInfo* immediateInfo = null)
    {
        if (Interop.Ucp.IsRequest(statusPointer))
        {
            if (!IsDone)
            {
                Request = statusPointer;
                Worker.Track(this);
            }

            return;
        }

        var status = Interop.Ucp.StatusOf(statusPointer);
        Complete(status, immediateInfo is null ? new UcxMessage(0, Length) : new UcxMessage(immediateInfo->SenderTag, (long)immediateInfo->Length));
    }

    /// <summary>Cancels a pending request (it completes with UCS_ERR_CANCELED through its callback), failing it with <paramref name="reason"/> if given.</summary>
    public void Cancel(Exception? reason)
    {
        if (IsDone)
        {
            return;
        }

        _failWith ??= reason;
        if (Request != null)
        {
            Interop.Ucp.ucp_request_cancel(Worker.Native, Request);
        }
    }

    /// <summary>Fails an operation whose worker was destroyed: UCX will call nothing back any more.</summary>
    public void Abandon(Exception reason)
    {
        _failWith ??= reason;
        Request = null;
        Complete(UcsStatus.ErrCanceled, default);
    }

    private void Complete(UcsStatus status, UcxMessage message)
    {
        if (IsDone)
        {
            return;
        }

        IsDone = true;
        Request = null;
        if (Tracked)
        {
            Worker.Untrack(this);
        }
        if (_self.IsAllocated)
        {
            _self.Free();
        }

        _pin.Dispose();
        _headerPin.Dispose();
        _cancellation.Dispose();
        if (status == UcsStatus.Ok)
        {
            _completion.TrySetResult(message);
        }
        else if (_failWith is not null)
        {
            _completion.TrySetException(_failWith);
        }
        else if (status == UcsStatus.ErrCanceled && _token.IsCancellationRequested)
        {
            _completion.TrySetCanceled(_token);
        }
        else
        {
            _completion.TrySetException(new UcxException(status, What));
        }
    }

    private static UcxOperation From(void* userData) => (UcxOperation)GCHandle.FromIntPtr((nint)userData).Target!;

    /// <summary>ucp_send_nbx_callback_t: sends and endpoint closes.</summary>
    [UnmanagedCallersOnly]
    public static void OnSent(void* request, UcsStatus status, void* userData)
    {
        try
        {
            var op = From(userData);
            op.Complete(status, new UcxMessage(0, op.Length));
        }
        catch (Exception e)
        {
            UcxWorker.ReportCallbackFailure(e);
        }
        finally
        {
            Interop.Ucp.ucp_request_free(request);
        }
    }

    /// <summary>ucp_tag_recv_nbx_callback_t: tagged receives.</summary>
    [UnmanagedCallersOnly]
    public static void OnReceived(void* request, UcsStatus status, UcpTagRecvInfo* info, void* userData)
    {
        try
        {
            var op = From(userData);
            op.Complete(status, info is null ? default : new UcxMessage(info->SenderTag, (long)info->Length));
        }
        catch (Exception e)
        {
            UcxWorker.ReportCallbackFailure(e);
        }
        finally
        {
            Interop.Ucp.ucp_request_free(request);
        }
    }

    /// <summary>ucp_am_recv_data_nbx_callback_t: an active message's rendezvous data arrived.</summary>
    [UnmanagedCallersOnly]
    public static void OnDataReceived(void* request, UcsStatus status, nuint length, void* userData)
    {
        try
        {
            var op = From(userData);
            op.Complete(status, new UcxMessage(0, (long)length));
        }
        catch (Exception e)
        {
            UcxWorker.ReportCallbackFailure(e);
        }
        finally
        {
            Interop.Ucp.ucp_request_free(request);
        }
    }

    public static nint DataReceivedCallback => (nint)(delegate* unmanaged<void*, UcsStatus, nuint, void*, void>)&OnDataReceived;

    /// <summary>The callback pointers as the <c>cb</c> union of ucp_request_param_t takes them.</summary>
    public static nint SentCallback => (nint)(delegate* unmanaged<void*, UcsStatus, void*, void>)&OnSent;

    public static nint ReceivedCallback => (nint)(delegate* unmanaged<void*, UcsStatus, UcpTagRecvInfo*, void*, void>)&OnReceived;
}
