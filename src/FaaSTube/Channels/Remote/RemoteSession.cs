using System.Security.Cryptography;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Native;
using FaaSTube.Native.Ucx;
using Microsoft.Extensions.Logging;

namespace FaaSTube.Channels.Remote;

/// <summary>
/// A remote client's session on the node, over one UCX endpoint (docs/protocol.md, Remote clients).
/// The node speaks first: a challenge (the session's tag bits and 32 random bytes); the client's
/// Hello must carry HMAC-SHA256(its workflow's secret, challenge, workflow, function), checked in
/// fixed time, and the session must be one of the authenticated remote sessions the node allows;
/// the whole handshake (every send and receive of it, from the accept) has
/// <see cref="TubeNodeOptions.HelloTimeout"/>, then the endpoint is closed by force (the only thing
/// that fails a send a frozen peer never takes) and the session ends; nothing else is read before.
/// The session has a UCX worker of its own (only its endpoint can reach its receives), destroyed
/// when it ends, with whatever its peer sent that nothing received.
/// Then requests are the socket's frames executed by the same <see cref="NodeSession"/>, in the same
/// request slots; the window is memory the node allocated (<see cref="NodeSession.OpenRemote"/>):
/// a PutPart's bytes are received straight into it before the part runs, a GetToHost part's bytes
/// are sent from it after the part ran and before its answer. The endpoint's failure (the peer died
/// or the network broke; UCX's peer error handling) or close ends the session.
/// </summary>
internal sealed partial class RemoteSession
{
    /// <summary>The uid remote sessions count under (<see cref="TubeNodeOptions.MaxSessionsPerUser"/> bounds them together).</summary>
    public const uint RemoteUid = uint.MaxValue;

    private readonly NodeSession _session;
    private readonly RemoteListener _listener;
    private readonly UcxWorker _worker;
    private readonly UcxEndpoint _endpoint;
    private readonly ulong _tag = RemoteWire.NewSession();
    private readonly HashSet<Task> _dataReceives = [];
    private readonly ILogger _logger;
    private volatile bool _forced;
    private bool _authenticated;

    private RemoteSession(NodeSession session, RemoteListener listener, UcxWorker worker, UcxEndpoint endpoint, ILogger logger)
    {
        _session = session;
        _listener = listener;
        _worker = worker;
        _endpoint = endpoint;
        _logger = logger;
    }

    /// <summary>Serves an endpoint accepted on its own <paramref name="worker"/> until it ends (then destroys the worker); the handshake's deadline runs from now.</summary>
    public static void Start(TubeNode node, RemoteListener listener, UcxWorker worker, UcxEndpoint endpoint, CancellationToken stop)
    {
        var session = node.NewSession(0, RemoteUid, inProcess: false);
        var remote = new RemoteSession(session, listener, worker, endpoint, node.Logger);
        var deadline = new CancellationTokenSource(node.Settings.HelloTimeout);
        session.Completion = Task.Run(() => remote.RunAsync(deadline, stop), CancellationToken.None);
    }

    /// <summary>The handshake's deadline passed, or the node stops: the endpoint closes by force now (its pending sends fail) and the session ends; nothing waits on the peer.</summary>
    private void ForceClose()
    {
        _forced = true;
        _session.Abort();
        _ = _endpoint.CloseAsync(force: true).ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private TubeNodeOptions Options => _session.Node.Settings;

    private async Task RunAsync(CancellationTokenSource deadline, CancellationToken stop)
    {
        using var handshakeDeadline = deadline;
        var overdue = deadline.Token.Register(static s => ((RemoteSession)s!).ForceClose(), this);
        using var stopping = stop.Register(static s => ((RemoteSession)s!).ForceClose(), this);
        _ = _endpoint.Failed.ContinueWith(static (_, s) => ((NodeSession)s!).Abort(), _session, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        var ended = _session.Ended;
        try
        {
            bool open = await HandshakeAsync(ended).ConfigureAwait(false);
            await overdue.DisposeAsync().ConfigureAwait(false); // a deadline that fired meanwhile has ended the session
            if (!open)
            {
                return;
            }

            var buffer = new byte[Options.MaxFrameBytes];
            while (true)
            {
                UcxMessage message;
                try
                {
                    message = await _endpoint.ReceiveAsync(buffer, RemoteWire.Tag(RemoteKind.Request, _tag), ulong.MaxValue, ended).ConfigureAwait(false);
                }
                catch (UcxException e) when (e.Status == UcsStatus.ErrMessageTruncated)
                {
                    await AnswerAsync(FrameType.Error, 0, ErrorPayload(TubeError.FrameTooLarge, $"A request over the node's limit of {Options.MaxFrameBytes} bytes.")).ConfigureAwait(false);
                    return;
                }

                var (type, requestId, payload) = RemoteWire.ReadFrame(buffer.AsSpan(0, (int)message.Length));
                (Task<UcxMessage>? Received, string? Refusal) data = type == FrameType.PutPart ? ReceivePart(payload) : (null, null);
                if (data.Refusal is { } fatal)
                {
                    await AnswerAsync(FrameType.Error, 0, ErrorPayload(TubeError.BadRequest, fatal)).ConfigureAwait(false);
                    return; // the part's bytes cannot be matched to it: the stream cannot be resynchronised
                }

                await _session.EnterAsync().ConfigureAwait(false);
                _ = HandleAsync(type, requestId, payload, data.Received);
            }
        }
        catch (InvalidDataException e)
        {
            await AnswerAsync(FrameType.Error, 0, ErrorPayload(TubeError.BadRequest, e.Message)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or UcxException)
        {
            // The peer went away, the endpoint failed, or the node is stopping.
        }
        catch (Exception e)
        {
            await AnswerAsync(FrameType.Error, 0, ErrorPayload(TubeError.Internal, _session.Node.InternalError("the remote connection", _session.Id, e))).ConfigureAwait(false);
        }
        finally
        {
            await overdue.DisposeAsync().ConfigureAwait(false);
            await _session.EndAsync(CloseAsync).ConfigureAwait(false);
            _listener.Ended(_authenticated);
        }
    }

    /// <summary>Challenge, Hello with its proof, the session opened with a node-allocated window. False when the session must end.</summary>
    private async Task<bool> HandshakeAsync(CancellationToken ended)
    {
        byte[] nonce = RandomNumberGenerator.GetBytes(RemoteWire.NonceBytes);
        await _endpoint.SendAsync(RemoteWire.Challenge(_tag, nonce), RemoteWire.Tag(RemoteKind.Challenge, _tag)).WaitAsync(ended).ConfigureAwait(false);

        var buffer = new byte[4096 + 3 * Frames.MaxNameBytes];
        UcxMessage message;
        try
        {
            message = await _endpoint.ReceiveAsync(buffer, RemoteWire.Tag(RemoteKind.Hello, _tag), ulong.MaxValue, ended).WaitAsync(ended).ConfigureAwait(false);
        }
        catch (UcxException e) when (e.Status == UcsStatus.ErrMessageTruncated)
        {
            await AnswerAsync(FrameType.Error, 0, ErrorPayload(TubeError.FrameTooLarge, "The Hello is too long.")).ConfigureAwait(false);
            return false;
        }

        uint requestId = 0;
        try
        {
            var (type, id, payload) = RemoteWire.ReadFrame(buffer.AsSpan(0, (int)message.Length));
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

            if (!_listener.TryAuthenticate())
            {
                throw new TubeException(TubeError.AccessDenied, $"The node has {Math.Min(Options.MaxRemoteSessions, Options.MaxSessionsPerUser)} remote clients connected, the most it allows.");
            }

            _authenticated = true;
            var ok = _session.OpenRemote(hello);
            LogOpened(_logger, _session.Id, _endpoint.Peer?.ToString() ?? "?", hello.Workflow, hello.Function);
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

    /// <summary>
    /// A PutPart's bytes, received into the window range it names (a receive posted now, in the
    /// order of the requests). A part that names no whole range of pages in the window has bytes
    /// that nothing can receive: a refusal that ends the session.
    /// </summary>
    private (Task<UcxMessage>? Received, string? Refusal) ReceivePart(byte[] payload)
    {
        PutPart part;
        try
        {
            part = (PutPart)Requests.DecodeTraced(FrameType.PutPart, payload).Request;
        }
        catch (Exception e) when (e is InvalidDataException or TubeException)
        {
            return (null, $"A malformed PutPart: {e.Message}");
        }

        var window = _session.CurrentWindow!;
        if (part.Length <= 0 || part.WindowOffset < 0 || part.WindowOffset % RemoteWire.PageBytes != 0 || part.WindowOffset > window.Length - part.Length)
        {
            return (null, $"A PutPart of {part.Length} bytes at window offset {part.WindowOffset}: a remote part starts on a page of the window and ends inside it.");
        }

        var received = _endpoint.ReceiveAsync(window.Memory.Slice(part.WindowOffset, part.Length), RemoteWire.Tag(RemoteKind.PutData, _tag, part.WindowOffset));
        lock (_dataReceives)
        {
            _dataReceives.Add(received);
        }

        _ = received.ContinueWith(
            (t, s) =>
            {
                lock (_dataReceives)
                {
                    _dataReceives.Remove(t);
                }
            }, null, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return (received, null);
    }

    /// <summary>One request (its slot taken): its bytes first for a PutPart, executed, a GetToHost part's bytes sent, answered (a one-way request only when it failed); the slot given back at the end.</summary>
    private async Task HandleAsync(FrameType type, uint requestId, byte[] payload, Task<UcxMessage>? data)
    {
        try
        {
            if (data is not null)
            {
                UcxMessage received;
                try
                {
                    received = await data.ConfigureAwait(false);
                }
                catch (UcxException e)
                {
                    throw new TubeException(TubeError.BadRequest, $"The part's bytes did not arrive whole ({e.StatusName}).");
                }

                var part = (PutPart)Requests.DecodeTraced(FrameType.PutPart, payload).Request;
                if (received.Length != part.Length)
                {
                    throw new TubeException(TubeError.BadRequest, $"The part announced {part.Length} bytes; {received.Length} came.");
                }
            }

            var (reply, _) = await _session.ExecuteFrameAsync(type, payload).ConfigureAwait(false);
            if (type == FrameType.GetToHost)
            {
                var part = (GetToHost)Requests.DecodeTraced(FrameType.GetToHost, payload).Request; // checked against the window by the session
                await _endpoint.SendAsync(_session.CurrentWindow!.Memory.Slice(part.WindowOffset, part.Length), RemoteWire.Tag(RemoteKind.GetData, _tag, part.WindowOffset)).ConfigureAwait(false);
            }

            if (OneWay.Is(type))
            {
                return;
            }

            var writer = new PayloadWriter();
            reply.Write(writer);
            await AnswerAsync(FrameType.Ok, requestId, writer.Memory).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_session.Ended.IsCancellationRequested)
        {
            // The session ended under the request: nobody is there to answer.
        }
        catch (TubeException e)
        {
            await AnswerAsync(FrameType.Error, requestId, ErrorPayload(e.Error, e.Reason)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is UcxException or ObjectDisposedException)
        {
            _session.Abort(); // the endpoint failed while the part's bytes went out
        }
        finally
        {
            _session.Exit();
        }
    }

    /// <summary>A frame to the client; an endpoint that is gone is nobody to answer.</summary>
    private async Task AnswerAsync(FrameType type, uint requestId, ReadOnlyMemory<byte> payload)
    {
        try
        {
            await _endpoint.SendAsync(Frames.Encode(type, requestId, payload.Span), RemoteWire.Tag(RemoteKind.Answer, _tag)).WaitAsync(_session.Ended).ConfigureAwait(false);
        }
        catch (Exception e) when (e is UcxException or ObjectDisposedException or OperationCanceledException)
        {
            // The client is gone; the session's end cleans up.
        }
    }

    /// <summary>
    /// The session's transport closes (its requests were cancelled; EndAsync then waits for them):
    /// the endpoint is flushed (a last answer reaches the client), at most 2 s, unless it was closed
    /// by force (the handshake's deadline, the node's stop); then the session's worker is destroyed:
    /// every send and receive still pending fails (bounded: the worker gives UCX 2 s), nothing of
    /// UCX touches the window any more, and the messages the peer sent that nothing received are freed.
    /// </summary>
    private async Task CloseAsync()
    {
        if (!_forced)
        {
            try
            {
                await _endpoint.CloseAsync(force: false).WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Not flushed in time (or already failed): the worker's end closes it by force.
            }
        }

        await _listener.DisposeWorkerAsync(_worker).ConfigureAwait(false);
        Task[] receives;
        lock (_dataReceives)
        {
            receives = [.. _dataReceives];
        }

        await Task.WhenAll(receives).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing); // failed with the worker
    }

    private static ReadOnlyMemory<byte> ErrorPayload(TubeError error, string message) =>
        Payload.Writer(new Error(error, message.Length > 2000 ? message[..2000] : message)).Memory;

    [LoggerMessage(Level = LogLevel.Warning, Message = "Remote session {Session} from {Peer} refused: no valid proof for workflow '{Workflow}'")]
    private static partial void LogRefused(ILogger logger, long session, string peer, string workflow);

    [LoggerMessage(Level = LogLevel.Information, Message = "Remote session {Session} from {Peer} opened for workflow '{Workflow}', function '{Function}'")]
    private static partial void LogOpened(ILogger logger, long session, string peer, string workflow, string function);
}
