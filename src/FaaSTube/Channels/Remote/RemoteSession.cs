using System.Security.Cryptography;
using System.Threading.Channels;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Native;
using FaaSTube.Native.Ucx;
using Microsoft.Extensions.Logging;

namespace FaaSTube.Channels.Remote;

/// <summary>
/// A remote client's session on the node, over one UCX endpoint on a worker of its own
/// (docs/protocol.md, Remote clients). The node receives only active messages, and each is decided
/// on the worker's progress thread by <see cref="OnMessage"/> before anything of it is kept:
/// <list type="bullet">
/// <item>a message that did not come on the session's endpoint (its reply endpoint is another, or
/// none) is dropped;</item>
/// <item>before the proof, only one Hello of at most <see cref="RemoteWire.MaxHelloBytes"/> with no
/// data is taken; anything else closes the session;</item>
/// <item>after it, a request is taken only while the client has fewer than its credits
/// (<see cref="TubeNodeOptions.MaxRequestsInFlight"/>) unanswered, with a frame of at most
/// <see cref="RemoteWire.MaxRequestBytes"/>; a PutPart's or PutWhole's bytes only into the window range it names,
/// of exactly its length (rendezvous data received straight there); anything else closes the session.</item>
/// </list>
/// So the node holds at most a Hello before the proof and the credits' frames after it, plus the
/// window it allocated: nothing a peer sends is buffered that the node did not agree to. The node
/// speaks first (the challenge); the Hello must carry HMAC-SHA256(its workflow's secret, challenge,
/// workflow, function), checked in fixed time; the whole handshake has <see cref="TubeNodeOptions.HelloTimeout"/>
/// from the accept, then the endpoint is closed by force. Requests run in the same
/// <see cref="NodeSession"/> as the socket's (same slots, checks, errors); every request is answered
/// (a one-way request with an empty Ok: its credit back). The endpoint's failure or close ends the session.
/// </summary>
internal sealed partial class RemoteSession : IUcxMessageHandler
{
    /// <summary>The uid remote sessions count under (<see cref="TubeNodeOptions.MaxSessionsPerUser"/> bounds them together).</summary>
    public const uint RemoteUid = uint.MaxValue;

    private const int AwaitingHello = 0;
    private const int HelloTaken = 1;
    private const int Open = 2;
    private const int Closed = 3;

    private readonly IRemoteBackend _session;
    private readonly IRemoteHost _host;
    private readonly RemoteListener _listener;
    private readonly UcxWorker _worker;
    /// <summary>
    /// The requests taken, in order (bounded by the credits). Its reader's continuation runs on the
    /// writer's thread, the progress thread: a request starts where its message was decided, without
    /// a hop to the thread pool, and runs there until its first wait (the relay's ring send, the
    /// node's copy). Nothing on that path blocks: a slot is free whenever a credit was (same count),
    /// sends are queued to the progress thread itself. The handshake leaves it (HandshakeAsync).
    /// </summary>
    private readonly Channel<Inbound> _inbox = Channel.CreateUnbounded<Inbound>(new UnboundedChannelOptions { SingleWriter = true, SingleReader = true, AllowSynchronousContinuations = true });
    private readonly ILogger _logger;
    private readonly int _credits;
    private readonly int _maxRequestBytes;
    private UcxEndpoint? _endpoint;
    private volatile bool _forced;
    private bool _authenticated;

    /// <summary>The workflow whose secret made the connect ticket: the only one this session may prove (its limit counted it).</summary>
    private string _ticketWorkflow = "";
    private int _state;
    private int _outstanding;
    private long _lastHeard = Environment.TickCount64;
    private string? _violation;

    private RemoteSession(IRemoteHost host, IRemoteBackend session, RemoteListener listener, UcxWorker worker)
    {
        _host = host;
        _session = session;
        _listener = listener;
        _worker = worker;
        _logger = host.Logger;
        _credits = host.Settings.MaxRequestsInFlight;
        _maxRequestBytes = Math.Min(RemoteWire.MaxRequestBytes, host.Settings.MaxFrameBytes);
    }

    /// <summary>A request taken off the network: its frame, and the receive of a PutPart's bytes into the window (null: none, or already copied).</summary>
    private sealed record Inbound(FrameType Type, uint RequestId, byte[] Payload, Task? Data);

    /// <summary>
    /// Accepts <paramref name="request"/> on its own <paramref name="worker"/> (whose handlers are this
    /// session's before the endpoint exists) and serves it until it ends (then destroys the worker);
    /// the handshake's deadline runs from now. Returns the session's completion.
    /// </summary>
    public static async Task<Task> StartAsync(IRemoteHost host, RemoteListener listener, UcxWorker worker, UcxConnectionRequest request, string workflow, CancellationToken stop)
    {
        var session = host.NewSession();
        var remote = new RemoteSession(host, session, listener, worker) { _ticketWorkflow = workflow };
        var deadline = new CancellationTokenSource(host.Settings.HelloTimeout);
        try
        {
            await worker.SetMessageHandlerAsync((uint)RemoteMessage.Hello, remote).ConfigureAwait(false);
            await worker.SetMessageHandlerAsync((uint)RemoteMessage.Request, remote).ConfigureAwait(false);
            await worker.SetMessageHandlerAsync((uint)RemoteMessage.Pong, remote).ConfigureAwait(false);
            remote._endpoint = await request.AcceptAsync(worker).ConfigureAwait(false);
        }
        catch
        {
            deadline.Dispose();
            session.Abort();
            await session.EndAsync(static () => Task.CompletedTask).ConfigureAwait(false);
            throw;
        }

        session.Completion = Task.Run(() => remote.RunAsync(deadline, stop), CancellationToken.None);
        return session.Completion;
    }

    /// <summary>
    /// On the worker's progress thread: decides about one message before anything of it is kept
    /// (see the class's summary). Never blocks: a session to close is closed from the thread pool.
    /// </summary>
    public void OnMessage(UcxWorker worker, in UcxActiveMessage message)
    {
        var endpoint = _endpoint;
        if (endpoint is null || message.ReplyEndpoint == 0 || message.ReplyEndpoint != endpoint.Native)
        {
            _listener.CountDropped(); // another endpoint's, or one that did not say where it came from: never the session's
            return;
        }

        Volatile.Write(ref _lastHeard, Environment.TickCount64); // the peer is alive (KeepAliveAsync)
        if (message.Id == (uint)RemoteMessage.Pong && Volatile.Read(ref _state) == Open)
        {
            if (message.Header.Length != 0 || message.Length != 0 || message.IsRendezvous)
            {
                Violate(TubeError.BadRequest, "A Pong carries nothing.");
            }

            return;
        }

        switch (Volatile.Read(ref _state))
        {
            case AwaitingHello:
                if (message.Id != (uint)RemoteMessage.Hello || message.Length != 0 || message.IsRendezvous || message.Header.Length > RemoteWire.MaxHelloBytes)
                {
                    Violate(TubeError.BadRequest, $"Before its proof a remote client sends one Hello of at most {RemoteWire.MaxHelloBytes} bytes and no data; message {message.Id} had {message.Header.Length} + {message.Length} bytes.");
                    return;
                }

                Volatile.Write(ref _state, HelloTaken);
                _inbox.Writer.TryWrite(new Inbound(FrameType.Hello, 0, message.Header.ToArray(), null));
                return;
            case Open:
                TakeRequest(worker, message);
                return;
            case HelloTaken:
                Violate(TubeError.BadRequest, "A remote client sends nothing after its Hello until the node has answered it.");
                return;
            default:
                return; // closing: dropped
        }
    }

    private void TakeRequest(UcxWorker worker, in UcxActiveMessage message)
    {
        if (message.Id != (uint)RemoteMessage.Request)
        {
            Violate(TubeError.BadRequest, $"Message {message.Id} is not a request.");
            return;
        }

        if (message.Header.Length > _maxRequestBytes)
        {
            Violate(TubeError.FrameTooLarge, $"A request of {message.Header.Length} bytes is over the node's limit of {_maxRequestBytes} for remote requests.");
            return;
        }

        if (Interlocked.Increment(ref _outstanding) > _credits)
        {
            Violate(TubeError.BadRequest, $"More than {_credits} requests unanswered: the client ignored its credits.");
            return;
        }

        FrameType type;
        uint requestId;
        byte[] payload;
        try
        {
            (type, requestId, payload) = RemoteWire.ReadFrame(message.Header);
        }
        catch (InvalidDataException e)
        {
            Violate(TubeError.BadRequest, e.Message);
            return;
        }

        bool hasData = message.Length > 0 || message.IsRendezvous;
        if (!Requests.CarriesBytes(type))
        {
            if (hasData)
            {
                Violate(TubeError.BadRequest, $"{type} carried {message.Length} bytes of data: only a PutPart or a PutWhole carries its bytes.");
                return;
            }

            _inbox.Writer.TryWrite(new Inbound(type, requestId, payload, null));
            return;
        }

        int windowOffset, length;
        try
        {
            (windowOffset, length, _) = Requests.WindowRangeOf(Requests.DecodeTraced(type, payload).Request)!.Value;
        }
        catch (Exception e) when (e is InvalidDataException or TubeException)
        {
            Violate(TubeError.BadRequest, $"A malformed {type}: {e.Message}");
            return;
        }

        var window = _session.Window;
        if (window.IsEmpty || length <= 0 || length != message.Length || windowOffset < 0 || windowOffset > window.Length - length)
        {
            Violate(TubeError.BadRequest, $"A {type} of {length} bytes at window offset {windowOffset} carried {message.Length} bytes: a part carries exactly its bytes, for a range inside the window.");
            return;
        }

        var target = window.Slice(windowOffset, length);
        Task data;
        if (message.IsRendezvous)
        {
            data = worker.ReceiveData(message, target); // straight into the window: nothing is staged anywhere else
        }
        else
        {
            message.EagerData.CopyTo(target.Span);
            data = Task.CompletedTask;
        }

        _inbox.Writer.TryWrite(new Inbound(type, requestId, payload, data));
    }

    /// <summary>The peer broke the rules: nothing more of it is taken; it is told why (briefly) and its endpoint closed by force.</summary>
    private void Violate(TubeError error, string reason)
    {
        int was = Interlocked.Exchange(ref _state, Closed);
        if (was == Closed)
        {
            return;
        }

        _violation = reason; // the session ends once the peer was told (its requests already taken still end with it)
        if (was != Open)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static s => s.ForceClose(), this, preferLocal: false); // unauthenticated: closed at once, without a word
            return;
        }

        _ = Task.Run(async () =>
        {
            try
            {
                await _endpoint!.SendMessageAsync((uint)RemoteMessage.Answer, Frames.Encode(FrameType.Error, 0, ErrorPayload(error, reason).Span))
                    .WaitAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
                await _endpoint.CloseAsync(force: false).WaitAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false); // flushed: the word reaches the peer before the close
            }
            catch (Exception)
            {
                // It does not take it: closed all the same.
            }

            ForceClose();
        });
    }

    /// <summary>The handshake's deadline passed, or the node stops: the endpoint closes by force now (its pending sends fail) and the session ends; nothing waits on the peer.</summary>
    private void ForceClose()
    {
        _forced = true;
        Volatile.Write(ref _state, Closed);
        _session.Abort();
        _ = _endpoint!.CloseAsync(force: true).ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private TubeNodeOptions Options => _host.Settings;

    private async Task RunAsync(CancellationTokenSource deadline, CancellationToken stop)
    {
        using var handshakeDeadline = deadline;
        var overdue = deadline.Token.Register(static s => ((RemoteSession)s!).ForceClose(), this);
        using var stopping = stop.Register(static s => ((RemoteSession)s!).ForceClose(), this);
        _ = _endpoint!.Failed.ContinueWith(static (_, s) => ((IRemoteBackend)s!).Abort(), _session, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        var ended = _session.Ended;
        try
        {
            bool open = await HandshakeAsync(ended).ConfigureAwait(false);
            await overdue.DisposeAsync().ConfigureAwait(false); // a deadline that fired meanwhile has ended the session
            if (!open)
            {
                return;
            }

            _ = KeepAliveAsync(ended);
            await foreach (var request in _inbox.Reader.ReadAllAsync(ended).ConfigureAwait(false))
            {
                await _session.EnterAsync().ConfigureAwait(false);
                var handled = HandleAsync(request);
                if (OneWay.Is(request.Type))
                {
                    // Answered before the next request starts, as the node applies one-way requests before
                    // it reads the next frame: a Sync (FlushAsync) after a Release is answered after the
                    // Release's refusal, also when the request is relayed (the relay waits for the node).
                    await handled.ConfigureAwait(false);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or UcxException or ChannelClosedException)
        {
            // The peer went away, the endpoint failed, or the node is stopping.
        }
        catch (Exception e)
        {
            await AnswerAsync(FrameType.Error, 0, ErrorPayload(TubeError.Internal, _host.InternalError("the remote connection", _session.Id, e))).ConfigureAwait(false);
        }
        finally
        {
            if (_violation is { } reason)
            {
                LogViolation(_logger, _session.Id, _endpoint.Peer?.ToString() ?? "?", reason);
            }

            await overdue.DisposeAsync().ConfigureAwait(false);
            await _session.EndAsync(CloseAsync).ConfigureAwait(false);
            _listener.Ended(_ticketWorkflow, _authenticated);
        }
    }

    /// <summary>
    /// While the session is open: once the client has sent nothing for a third of
    /// <see cref="TubeNodeOptions.RemoteIdleTimeout"/>, a Ping (the client answers Pong); once nothing
    /// has come for the whole of it, the endpoint is closed by force and the session ends. UCX over
    /// TCP does not notice a cut link while this side only waits (docs/testing.md), so this bounds it.
    /// </summary>
    private async Task KeepAliveAsync(CancellationToken ended)
    {
        long idle = (long)Options.RemoteIdleTimeout.TotalMilliseconds;
        try
        {
            Volatile.Write(ref _lastHeard, Environment.TickCount64);
            while (true)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(idle / 3), ended).ConfigureAwait(false);
                long silent = Environment.TickCount64 - Volatile.Read(ref _lastHeard);
                if (silent >= idle)
                {
                    LogSilent(_logger, _session.Id, _endpoint!.Peer?.ToString() ?? "?", silent);
                    ForceClose();
                    return;
                }

                if (silent >= idle / 3)
                {
                    _ = _endpoint!.SendMessageAsync((uint)RemoteMessage.Ping, ReadOnlyMemory<byte>.Empty).WaitAsync(ended)
                        .ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // The session ended.
        }
    }

    /// <summary>Challenge, Hello with its proof, the session opened with a node-allocated window. False when the session must end.</summary>
    private async Task<bool> HandshakeAsync(CancellationToken ended)
    {
        byte[] nonce = RandomNumberGenerator.GetBytes(RemoteWire.NonceBytes);
        await _endpoint!.SendMessageAsync((uint)RemoteMessage.Challenge, RemoteWire.Challenge(nonce, _credits, _maxRequestBytes)).WaitAsync(ended).ConfigureAwait(false);
        if (!await _inbox.Reader.WaitToReadAsync(ended).ConfigureAwait(false) || !_inbox.Reader.TryRead(out var first))
        {
            return false; // the peer broke the rules before its Hello
        }

        await Task.Yield(); // off the progress thread: the proof, the window and the node's Hello take their time

        uint requestId = 0;
        try
        {
            var (type, id, payload) = RemoteWire.ReadFrame(first.Payload);
            requestId = id;
            if (type != FrameType.Hello)
            {
                throw new TubeException(TubeError.BadRequest, "The first frame must be Hello.");
            }

            var reader = new PayloadReader(payload);
            var hello = Hello.Read(ref reader); // a wrong version first: VersionMismatch
            byte[] proof = reader.Bytes();
            if (!reader.AtEnd)
            {
                throw new InvalidDataException("A remote Hello ends with its proof.");
            }

            // The same answer whether the workflow is unknown or the proof wrong: no oracle of which workflows exist.
            byte[]? secret = Options.RemoteSecrets is { } secrets && secrets.TryGetValue(hello.Workflow, out var s) ? s : null;
            byte[] expected = RemoteWire.Proof(secret ?? new byte[32], nonce, hello.Workflow, hello.Function);
            bool proven = CryptographicOperations.FixedTimeEquals(expected, proof);
            if (!proven || secret is null)
            {
                LogRefused(_logger, _session.Id, _endpoint.Peer?.ToString() ?? "?", hello.Workflow);
                throw new TubeException(TubeError.AccessDenied, $"Workflow '{hello.Workflow}' is not open to remote clients, or the proof of its secret is wrong.");
            }

            if (hello.Workflow != _ticketWorkflow)
            {
                // The ticket counted against its workflow's limit: a session is of that workflow only.
                LogRefused(_logger, _session.Id, _endpoint.Peer?.ToString() ?? "?", hello.Workflow);
                throw new TubeException(TubeError.AccessDenied, $"Workflow '{hello.Workflow}' is not open to remote clients, or the proof of its secret is wrong.");
            }

            if (!_listener.TryAuthenticate(_ticketWorkflow))
            {
                throw new TubeException(TubeError.AccessDenied, $"The node has {Math.Min(Options.MaxRemoteSessions, Options.MaxSessionsPerUser)} remote clients connected, the most it allows.");
            }

            _authenticated = true;
            var ok = await _session.OpenAsync(hello).ConfigureAwait(false);
            LogOpened(_logger, _session.Id, _endpoint.Peer?.ToString() ?? "?", hello.Workflow, hello.Function);
            if (Interlocked.CompareExchange(ref _state, Open, HelloTaken) != HelloTaken)
            {
                return false; // it broke the rules meanwhile
            }

            await AnswerAsync(FrameType.Ok, requestId, Payload.Writer(ok).Memory).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is TubeException or InvalidDataException)
        {
            var refused = e as TubeException ?? new TubeException(TubeError.BadRequest, e.Message);
            await AnswerAsync(FrameType.Error, requestId, ErrorPayload(refused.Error, refused.Reason)).ConfigureAwait(false);
            return false;
        }
    }

    /// <summary>One request (its slot taken): its bytes first for a PutPart, executed, answered (a one-way request too: its credit back; a GetToHost part's Ok carries the part's bytes, a GetWhole's the data's when it fitted); the slot given back at the end.</summary>
    private async Task HandleAsync(Inbound request)
    {
        var (type, requestId, payload, data) = request;
        try
        {
            if (data is not null)
            {
                try
                {
                    await data.ConfigureAwait(false);
                }
                catch (UcxException e)
                {
                    throw new TubeException(TubeError.BadRequest, $"The part's bytes did not arrive whole ({e.StatusName}).");
                }
            }

            var reply = await _session.ExecuteAsync(type, payload).ConfigureAwait(false);
            var bytes = AnswerBytes(type, payload, reply);

            Interlocked.Decrement(ref _outstanding); // before the answer leaves: the client may send again once it has it
            await AnswerAsync(FrameType.Ok, requestId, reply, bytes).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_session.Ended.IsCancellationRequested)
        {
            // The session ended under the request: nobody is there to answer.
        }
        catch (TubeException e)
        {
            Interlocked.Decrement(ref _outstanding);
            await AnswerAsync(FrameType.Error, requestId, ErrorPayload(e.Error, e.Reason)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is UcxException or ObjectDisposedException)
        {
            _session.Abort(); // the endpoint failed
        }
        catch (Exception e)
        {
            Interlocked.Decrement(ref _outstanding);
            await AnswerAsync(FrameType.Error, requestId, ErrorPayload(TubeError.Internal, _host.InternalError(type.ToString(), _session.Id, e))).ConfigureAwait(false);
        }
        finally
        {
            _session.Exit();
        }
    }

    /// <summary>
    /// The window range an answer carries (the node checked it against the window): a GetToHost
    /// part's, and a GetWhole's when the data fitted (its Ok's length at most the range's).
    /// </summary>
    private ReadOnlyMemory<byte> AnswerBytes(FrameType type, byte[] payload, ReadOnlyMemory<byte> reply)
    {
        if (!Requests.NamesWindowRange(type) || Requests.CarriesBytes(type))
        {
            return default;
        }

        var (offset, most, _) = Requests.WindowRangeOf(Requests.DecodeTraced(type, payload).Request)!.Value;
        if (type != FrameType.GetWhole)
        {
            return _session.Window.Slice(offset, most); // a GetToHost part: exactly its range
        }

        long length = Payload.Read<GetOk>(reply.Span).Length; // a GetWhole: the data, when it fitted
        return length > 0 && length <= most ? _session.Window.Slice(offset, (int)length) : default;
    }

    /// <summary>A frame to the client (with <paramref name="data"/>, a part's bytes from the window); an endpoint that is gone is nobody to answer.</summary>
    private async Task AnswerAsync(FrameType type, uint requestId, ReadOnlyMemory<byte> payload, ReadOnlyMemory<byte> data = default)
    {
        try
        {
            await _endpoint!.SendMessageAsync((uint)RemoteMessage.Answer, Frames.Encode(type, requestId, payload.Span), data).WaitAsync(_session.Ended).ConfigureAwait(false);
        }
        catch (Exception e) when (e is UcxException or ObjectDisposedException or OperationCanceledException)
        {
            // The client is gone; the session's end cleans up.
        }
    }

    /// <summary>
    /// The session's transport closes (its requests were cancelled; EndAsync then waits for them):
    /// the endpoint is flushed (a last answer reaches the client), at most 2 s, unless it was closed
    /// by force (the handshake's deadline, the node's stop, a broken rule); then the session's worker
    /// is destroyed: every send and receive still pending fails (bounded: the worker gives UCX 2 s),
    /// and nothing of UCX touches the window any more.
    /// </summary>
    private async Task CloseAsync()
    {
        Volatile.Write(ref _state, Closed);
        _inbox.Writer.TryComplete();
        if (!_forced)
        {
            try
            {
                await _endpoint!.CloseAsync(force: false).WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Not flushed in time (or already failed): the worker's end closes it by force.
            }
        }

        await _listener.DisposeWorkerAsync(_worker).ConfigureAwait(false);
        while (_inbox.Reader.TryRead(out var unserved))
        {
            if (unserved.Data is { } data)
            {
                await data.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing); // failed with the worker
            }
        }
    }

    private static ReadOnlyMemory<byte> ErrorPayload(TubeError error, string message) =>
        Payload.Writer(new Error(error, message.Length > 2000 ? message[..2000] : message)).Memory;

    [LoggerMessage(Level = LogLevel.Warning, Message = "Remote session {Session} from {Peer} refused: no valid proof for workflow '{Workflow}'")]
    private static partial void LogRefused(ILogger logger, long session, string peer, string workflow);

    [LoggerMessage(Level = LogLevel.Information, Message = "Remote session {Session} from {Peer} opened for workflow '{Workflow}', function '{Function}'")]
    private static partial void LogOpened(ILogger logger, long session, string peer, string workflow, string function);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Remote session {Session} from {Peer} closed: nothing heard from it for {Milliseconds} ms (RemoteIdleTimeout)")]
    private static partial void LogSilent(ILogger logger, long session, string peer, long milliseconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Remote session {Session} from {Peer} closed: {Reason}")]
    private static partial void LogViolation(ILogger logger, long session, string peer, string reason);
}
