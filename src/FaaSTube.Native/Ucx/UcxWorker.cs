using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using FaaSTube.Native.Handles;

namespace FaaSTube.Native.Ucx;

/// <summary>
/// A UCP worker driven by one thread of its own. Every UCX call on the worker, its endpoints and
/// listeners runs on that thread: callers post commands (<see cref="Post"/>) and wake it with
/// <c>ucp_worker_signal</c> (not needed from the thread itself: it looks at the queue after every
/// round of progress). After its last event or command the thread keeps polling for a bounded
/// <see cref="SpinTime"/> (an answer on its way is caught without a sleep and a wake-up, as
/// ucx_perftest's busy-polling catches it), then arms the worker and sleeps in poll(2) on the
/// worker's event descriptor: an idle worker never keeps a core busy. It wakes on network events,
/// on a signal, or once a second as a safety net. Disposing fails whatever is still pending instead
/// of leaving it hanging.
/// </summary>
internal sealed unsafe class UcxWorker : IDisposable
{
    private const int IdleWakeMilliseconds = 1000;
    private static readonly TimeSpan ShutdownDrain = TimeSpan.FromSeconds(2);

    private readonly SafeUcpWorkerHandle _handle;
    private readonly nint _native;
    private readonly int _eventFd;
    private readonly ConcurrentQueue<(Action Run, Action<Exception> Abort)> _commands = new();
    private readonly HashSet<UcxOperation> _pending = [];
    private readonly HashSet<UcxEndpoint> _endpoints = [];
    private readonly HashSet<UcxListener> _listeners = [];
    private readonly List<GCHandle> _handlers = [];
    private readonly Thread _thread;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _signalGate = new();
    private volatile bool _stopping;
    private volatile bool _closed;
    private long _spinTicks = (long)(DefaultSpinTime.TotalSeconds * Stopwatch.Frequency);

    /// <summary>
    /// How long a progress thread polls after its last event before it sleeps, unless set per worker
    /// (<see cref="SpinTime"/>): <c>FAASTUBE_UCX_SPIN_US</c> microseconds when the environment sets it
    /// (0 to 1000; for measuring), else 50 us where there are more than two cores and none on two or
    /// fewer, where the poll would take the core the peer (or this process's other threads) needs to
    /// answer (bench/results/2026-12-02-remote-latency.md measured both).
    /// </summary>
    internal static readonly TimeSpan DefaultSpinTime =
        int.TryParse(Environment.GetEnvironmentVariable("FAASTUBE_UCX_SPIN_US"), out int us) && us is >= 0 and <= 1000
            ? TimeSpan.FromMicroseconds(us)
            : Environment.ProcessorCount > 2 ? TimeSpan.FromMicroseconds(50) : TimeSpan.Zero;

    private UcxWorker(UcxContext context, string name, ulong clientId)
    {
        Context = context;
        _handle = SafeUcpWorkerHandle.Create(context.Handle, (context.HasTags ? Interop.Ucp.WAKEUP_TAG_SEND | Interop.Ucp.WAKEUP_TAG_RECV : 0) | Interop.Ucp.WAKEUP_TX | Interop.Ucp.WAKEUP_RX, clientId: clientId);
        _native = _handle.DangerousGetHandle();
        int fd;
        var status = Interop.Ucp.ucp_worker_get_efd(_native, &fd);
        if (status < 0)
        {
            _handle.Dispose();
            throw new UcxException(status, "ucp_worker_get_efd");
        }

        _eventFd = fd;
        try
        {
            CoverEveryMessageId();
        }
        catch
        {
            _handle.Dispose();
            FreeHandlers();
            throw;
        }

        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    public UcxContext Context { get; }

    /// <summary>The worker, for the UCX calls made on the progress thread.</summary>
    internal nint Native => _native;

    internal SafeUcpWorkerHandle Handle => _handle;

    /// <summary>Completes when the progress thread has destroyed the worker.</summary>
    public Task Stopped => _stopped.Task;

    /// <summary>How long the progress thread keeps polling after its last event or command before it arms the worker and sleeps (bounded: at most 1 ms).</summary>
    public TimeSpan SpinTime
    {
        get => TimeSpan.FromSeconds((double)Volatile.Read(ref _spinTicks) / Stopwatch.Frequency);
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, TimeSpan.FromMilliseconds(1));
            Volatile.Write(ref _spinTicks, (long)(value.TotalSeconds * Stopwatch.Frequency));
        }
    }

    /// <summary>Whether the caller is the progress thread (a handler, a command).</summary>
    public bool IsProgressThread => Environment.CurrentManagedThreadId == _thread.ManagedThreadId;

    /// <summary>How many operations are pending in UCX (read on the progress thread, or as a hint).</summary>
    public int PendingCount => _pending.Count;

    /// <summary>A worker with its progress thread; <paramref name="clientId"/> (not 0) is what a listener sees in this worker's connection requests (<see cref="UcxEndpoint.ConnectAsync(UcxWorker, System.Net.IPEndPoint, bool)"/> with sendClientId).</summary>
    public static UcxWorker Create(UcxContext context, string name = "ucx-progress", ulong clientId = 0) => new(context, name, clientId);

    /// <summary>Runs <paramref name="run"/> on the progress thread; its result or exception completes the task.</summary>
    public Task<T> InvokeAsync<T>(Func<T> run)
    {
        var completion = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(() =>
        {
            try
            {
                completion.TrySetResult(run());
            }
            catch (Exception e)
            {
                completion.TrySetException(e);
            }
        }, e => completion.TrySetException(e));
        return completion.Task;
    }

    /// <summary>
    /// Queues a command for the progress thread and wakes it; a worker that is gone runs <paramref name="abort"/> instead.
    /// The wake-up (ucp_worker_signal, the one UCX call made off the progress thread) happens under
    /// <see cref="_signalGate"/>, which the progress thread takes to close the worker: so no caller
    /// holds a reference to the worker's handle as it is disposed, and ucp_worker_destroy always runs
    /// on the progress thread, never on a caller's as it lets go of a last reference.
    /// </summary>
    public void Post(Action run, Action<Exception> abort)
    {
        _commands.Enqueue((run, abort));
        if (IsProgressThread && !_closed)
        {
            return; // the thread runs the queue after the handler or command it is in: no wake-up needed
        }

        lock (_signalGate)
        {
            if (!_closed)
            {
                Interop.Ucp.ucp_worker_signal(_native);
                return;
            }
        }

        AbortQueued();
    }

    /// <summary>Posts a command that needs no abort (it only acts on a live worker).</summary>
    public void TryPost(Action run) => Post(run, static _ => { });

    internal void Track(UcxOperation operation)
    {
        operation.Tracked = true;
        _pending.Add(operation);
    }

    internal void Untrack(UcxOperation operation)
    {
        _pending.Remove(operation);
        operation.Endpoint?.Untrack(operation);
    }

    internal void Add(UcxEndpoint endpoint) => _endpoints.Add(endpoint);

    internal void Remove(UcxEndpoint endpoint) => _endpoints.Remove(endpoint);

    internal void Add(UcxListener listener) => _listeners.Add(listener);

    internal void Remove(UcxListener listener) => _listeners.Remove(listener);

    /// <summary>
    /// Posts a tagged receive into <paramref name="buffer"/> for a message whose tag matches
    /// <paramref name="tag"/> under <paramref name="mask"/>. Tied to <paramref name="from"/>, it fails
    /// when that endpoint fails or closes (UCX ties receives to the worker, not to a peer).
    /// </summary>
    public Task<UcxMessage> ReceiveAsync(Memory<byte> buffer, ulong tag, ulong mask = ulong.MaxValue, UcxEndpoint? from = null, CancellationToken cancellationToken = default)
    {
        var op = new UcxOperation(this, "ucp_tag_recv_nbx", from, buffer.Length, isReceive: true, key: UcxOperationKey.Tag, keyValue: tag);
        Post(() =>
        {
            if (from is not null && from.Failure is { } failure)
            {
                op.Abandon(failure);
                return;
            }

            from?.Track(op);
            var info = default(UcpTagRecvInfo);
            var parameters = new UcpRequestParam
            {
                // Always through the callback, which gets the sender's tag and length: an
                // immediate completion from UCX's unexpected queue did not fill recv_info on UCX 1.13.1.
                OpAttrMask = Interop.Ucp.OP_ATTR_FIELD_CALLBACK | Interop.Ucp.OP_ATTR_FIELD_USER_DATA | Interop.Ucp.OP_ATTR_FIELD_RECV_INFO
                    | Interop.Ucp.OP_ATTR_FLAG_NO_IMM_CMPL,
                Callback = UcxOperation.ReceivedCallback,
                UserData = op.UserData(),
                RecvInfo = &info,
            };
            void* pointer = op.Pin(buffer);
            op.Started(Interop.Ucp.ucp_tag_recv_nbx(_native, pointer, (nuint)buffer.Length, tag, mask, &parameters), &info);
            op.CancelWhen(cancellationToken);
        }, op.Abandon);
        return op.Task;
    }

    /// <summary>
    /// Makes <paramref name="handler"/> the one that decides about every active message with
    /// <paramref name="id"/> this worker receives (ucp_worker_set_am_recv_handler), on the progress thread.
    /// </summary>
    public Task SetMessageHandlerAsync(uint id, IUcxMessageHandler handler) => InvokeAsync(() =>
    {
        RegisterHandler(id, handler);
        return true;
    });

    /// <summary>ucp_worker_set_am_recv_handler for <paramref name="id"/>, on the progress thread (or before it starts); the handler's handle is freed once the worker is destroyed.</summary>
    private void RegisterHandler(uint id, IUcxMessageHandler handler)
    {
        var entry = GCHandle.Alloc(new HandlerEntry(this, id, handler));
        _handlers.Add(entry); // freed once the worker is destroyed: UCX calls nothing any more
        var parameters = new UcpAmHandlerParam
        {
            FieldMask = Interop.Ucp.AM_HANDLER_PARAM_FIELD_ID | Interop.Ucp.AM_HANDLER_PARAM_FIELD_CB | Interop.Ucp.AM_HANDLER_PARAM_FIELD_ARG,
            Id = id,
            Callback = &OnActiveMessage,
            Arg = GCHandle.ToIntPtr(entry),
        };
        UcxException.ThrowIfFailed(Interop.Ucp.ucp_worker_set_am_recv_handler(_native, &parameters));
    }

    /// <summary>
    /// On the progress thread, inside a handler: receives a rendezvous message's data into
    /// <paramref name="buffer"/> (ucp_am_recv_data_nbx; the buffer's length is what is fetched).
    /// The descriptor is UCX's from here on, whatever happens; the task completes when the bytes are in.
    /// </summary>
    public Task ReceiveData(in UcxActiveMessage message, Memory<byte> buffer)
    {
        var op = new UcxOperation(this, "ucp_am_recv_data_nbx", null, buffer.Length, isReceive: true);
        var parameters = new UcpRequestParam
        {
            OpAttrMask = Interop.Ucp.OP_ATTR_FIELD_CALLBACK | Interop.Ucp.OP_ATTR_FIELD_USER_DATA,
            Callback = UcxOperation.DataReceivedCallback,
            UserData = op.UserData(),
        };
        void* pointer = op.Pin(buffer);
        op.Started(Interop.Ucp.ucp_am_recv_data_nbx(_native, message.Data, pointer, (nuint)buffer.Length, &parameters));
        return op.Task;
    }

    /// <summary>The worker's address (ucp_worker_get_address): what another worker needs to reach it directly, over any interface it listens on.</summary>
    public Task<byte[]> GetAddressAsync() => InvokeAsync(() =>
    {
        nint address;
        nuint length;
        UcxException.ThrowIfFailed(Interop.Ucp.ucp_worker_get_address(_native, &address, &length));
        try
        {
            return new ReadOnlySpan<byte>((void*)address, checked((int)length)).ToArray();
        }
        finally
        {
            Interop.Ucp.ucp_worker_release_address(_native, address);
        }
    });

    private sealed record HandlerEntry(UcxWorker Worker, uint Id, IUcxMessageHandler Handler);

    /// <summary>The highest active-message id (UCX carries it in 16 bits).</summary>
    private const uint MaxMessageId = ushort.MaxValue;

    /// <summary>
    /// Before the progress thread starts (nothing else calls UCX on the worker yet): a handler that
    /// drops every message of the highest id, so that UCX's handler table covers every id. UCX 1.13.1's
    /// ucp_am_handler reads the table's entry for a message's id before checking that the id has a
    /// handler, or is inside the table: an active message to a worker without handlers (the table not
    /// allocated) faulted at 0x28 (id 1, 24-byte entries, flags at 0x10) and killed the process
    /// ("Caught signal 11 ... address 0x28"), and one with an id past the table read past its end.
    /// With the table at its full length (1.5 MiB: 65,536 entries, zeroed by UCX, so an id without
    /// a handler is dropped with UCX's warning), no id a peer sends reads outside it.
    /// </summary>
    private void CoverEveryMessageId() => RegisterHandler(MaxMessageId, DropMessages.Instance);

    private void FreeHandlers()
    {
        foreach (var handler in _handlers)
        {
            handler.Free();
        }

        _handlers.Clear();
    }

    /// <summary>Takes nothing of a message (UCX frees it).</summary>
    private sealed class DropMessages : IUcxMessageHandler
    {
        public static readonly DropMessages Instance = new();

        public void OnMessage(UcxWorker worker, in UcxActiveMessage message)
        {
        }
    }

    /// <summary>ucp_am_recv_callback_t: always UCS_OK (nothing is held past the call: the handler copied it, started its receive, or dropped it).</summary>
    [UnmanagedCallersOnly]
    private static UcsStatus OnActiveMessage(nint arg, void* header, nuint headerLength, void* data, nuint length, UcpAmRecvParam* param)
    {
        try
        {
            var entry = (HandlerEntry)GCHandle.FromIntPtr(arg).Target!;
            ulong attributes = param->RecvAttr;
            nint reply = (attributes & Interop.Ucp.AM_RECV_ATTR_FIELD_REPLY_EP) != 0 ? param->ReplyEp : 0;
            var message = new UcxActiveMessage(entry.Id, new ReadOnlySpan<byte>(header, checked((int)headerLength)), data, length, attributes, reply);
            entry.Handler.OnMessage(entry.Worker, in message);
        }
        catch (Exception e)
        {
            ReportCallbackFailure(e);
        }

        return UcsStatus.Ok;
    }

    public void Dispose()
    {
        _stopping = true;
        TryPost(static () => { });
        if (Environment.CurrentManagedThreadId != _thread.ManagedThreadId)
        {
            _thread.Join();
        }
    }

    internal static void ReportCallbackFailure(Exception e) =>
        Trace.TraceError($"UCX callback failed: {e}");

    private void Run()
    {
        Exception? failure = null;
        try
        {
            long lastActive = Stopwatch.GetTimestamp();
            while (!_stopping)
            {
                bool ran = RunQueued();
                if (Interop.Ucp.ucp_worker_progress(_native) != 0 || !_commands.IsEmpty || ran)
                {
                    lastActive = Stopwatch.GetTimestamp();
                    continue;
                }

                if (Stopwatch.GetTimestamp() - lastActive < Volatile.Read(ref _spinTicks))
                {
                    Thread.SpinWait(20); // bounded by SpinTime since the last event: then it sleeps
                    continue;
                }

                // Armed, the descriptor becomes readable on the next event or signal; commands
                // queued before arming were signalled before it and are seen by the check below.
                var armed = Interop.Ucp.ucp_worker_arm(_native);
                if (armed == UcsStatus.ErrBusy || !_commands.IsEmpty || _stopping)
                {
                    continue;
                }

                UcxException.ThrowIfFailed(armed);
                Sleep(IdleWakeMilliseconds);
                lastActive = Stopwatch.GetTimestamp(); // woken: what woke it is probably the first of several
            }
        }
        catch (Exception e)
        {
            failure = e;
            ReportCallbackFailure(e);
        }

        Shutdown(failure);
    }

    /// <summary>Runs the queued commands; whether there were any.</summary>
    private bool RunQueued()
    {
        bool ran = false;
        while (_commands.TryDequeue(out var command))
        {
            ran = true;
            try
            {
                command.Run();
            }
            catch (Exception e)
            {
                ReportCallbackFailure(e);
            }
        }

        return ran;
    }

    private void AbortQueued()
    {
        var gone = new ObjectDisposedException(nameof(UcxWorker), "The UCX worker was disposed.");
        while (_commands.TryDequeue(out var command))
        {
            command.Abort(gone);
        }
    }

    private void Sleep(int milliseconds)
    {
        var fd = new Interop.Libc.PollFd { Fd = _eventFd, Events = Interop.Libc.POLLIN };
        _ = Interop.Libc.poll(&fd, 1, milliseconds);
    }

    /// <summary>
    /// On the progress thread: commands queued so far run, endpoints close by force (their sends
    /// fail), receives are cancelled, UCX gets a bounded time to call everything back, then the
    /// worker is destroyed and whatever is still pending fails.
    /// </summary>
    private void Shutdown(Exception? failure)
    {
        var reason = failure ?? new ObjectDisposedException(nameof(UcxWorker), "The UCX worker was disposed.");
        try
        {
            RunQueued();
            foreach (var listener in _listeners.ToArray())
            {
                listener.CloseOnWorker();
            }

            foreach (var endpoint in _endpoints.ToArray())
            {
                endpoint.FailOnWorker(new UcxException(UcsStatus.ErrCanceled, "the UCX worker was disposed"), force: true);
            }

            foreach (var op in _pending.ToArray())
            {
                op.Cancel(reason);
            }

            var deadline = Stopwatch.StartNew();
            while (_pending.Count > 0 && deadline.Elapsed < ShutdownDrain)
            {
                if (Interop.Ucp.ucp_worker_progress(_native) == 0)
                {
                    Sleep(10);
                }
            }
        }
        catch (Exception e)
        {
            ReportCallbackFailure(e);
        }

        lock (_signalGate)
        {
            _closed = true; // from here on nobody signals the worker (see Post)
        }

        _handle.Dispose(); // ucp_worker_destroy, here: the endpoints and the listeners gave their references back above
        FreeHandlers();
        foreach (var op in _pending.ToArray())
        {
            op.Abandon(reason);
        }

        foreach (var endpoint in _endpoints.ToArray())
        {
            endpoint.Forget();
        }

        AbortQueued();
        _stopped.TrySetResult();
    }
}
