using System.IO.Pipelines;
using System.Security.Cryptography;
using FaaSTube.Channels.Admin;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Channels.Transport;
using Microsoft.Win32.SafeHandles;

namespace FaaSTube.Channels;

/// <summary>The first frame of a connection (Hello, GatewayHello or Status) and the descriptors that came with it (the window).</summary>
internal sealed record HelloFrame(FrameType Type, uint RequestId, byte[] Payload, IReadOnlyList<SafeFileHandle> Descriptors);

/// <summary>
/// A session served over frames (a Unix socket): the handshake within <see cref="TubeNodeOptions.HelloTimeout"/>,
/// then one frame read per free request slot, each request executed by the <see cref="NodeSession"/>
/// and answered with <c>Ok</c> or <c>Error</c> (one-way requests only with <c>Error</c>), pushes written
/// through the one <see cref="FrameWriter"/>, and the session's end when the connection ends.
/// <para>With a control ring (a second descriptor with Hello), requests also arrive on the ring and
/// are answered on it, in the same slots; the socket stays for the handshake, pushes and liveness:
/// its close ends the session, and so does a ring the client corrupts or stops reading.</para>
/// </summary>
internal sealed class FramedSession
{
    /// <summary>The largest control ring a client may bring: 1 MiB a direction.</summary>
    private static readonly long MaxRingBytes = ControlRingLayout.TotalBytes(1 << 20);

    private readonly NodeSession _session;
    private readonly PipeReader _reader;
    private readonly FrameWriter _writer;
    private readonly Func<CancellationToken, Task<HelloFrame?>> _receiveHello;
    private ControlRing? _ring;
    private ControlRingReceiver? _ringRequests;
    private ControlRingSender? _ringReplies;

    public FramedSession(NodeSession session, PipeReader reader, PipeWriter writer, Func<CancellationToken, Task<HelloFrame?>> receiveHello, IDisposable? transport)
    {
        _session = session;
        _reader = reader;
        _writer = new FrameWriter(writer, transport);
        _receiveHello = receiveHello;
        session.Push = close => _ = SendAsync(FrameType.CloseSlab, 0, Payload.Writer(close).Memory).AsTask()
            .ContinueWith(t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted);
    }

    /// <summary>Serves the connection until it ends.</summary>
    /// <param name="refusal">Sent at once, and the connection closed (a user the node does not serve at all).</param>
    /// <param name="helloRefusal">What a Hello gets (an admin user that is not a client user may only ask for the status).</param>
    /// <param name="stop">The node's stop.</param>
    public void Start(string? refusal, string? helloRefusal, CancellationToken stop)
    {
        _helloRefusal = helloRefusal;
        _session.Completion = Task.Run(() => RunAsync(refusal, stop), CancellationToken.None);
    }

    private string? _helloRefusal;

    private async Task RunAsync(string? refusal, CancellationToken stop)
    {
        using var stopping = stop.Register(static s => ((NodeSession)s!).Abort(), _session);
        var ended = _session.Ended;
        var options = _session.Node.Settings;
        try
        {
            if (refusal is not null)
            {
                await SendErrorAsync(0, TubeError.AccessDenied, refusal).ConfigureAwait(false);
                return;
            }

            if (!await HandshakeAsync(ended).ConfigureAwait(false))
            {
                return;
            }

            while (true)
            {
                // A frame, then a slot for it: at most one frame read ahead waits for a slot, and no
                // slot is held while the connection is quiet (a Get that waited for a publish takes a
                // slot again as it ends; with a ring, requests come there and the socket is mostly quiet).
                var frame = await Frames.ReadAsync(_reader, options.MaxFrameBytes, ended).ConfigureAwait(false);
                if (frame is not { } f)
                {
                    return; // the client closed
                }

                await _session.EnterAsync().ConfigureAwait(false);
                var handled = HandleAsync(f.Type, f.RequestId, f.Payload); // gives its slot back when done
                if (OneWay.Is(f.Type))
                {
                    // Applied, and its refusal written, before the next frame is read: a Sync after it is
                    // answered after its refusal, even when applying it had to wait (the network gateway's
                    // relay and FlushAsync count on that order).
                    await handled.ConfigureAwait(false);
                }
            }
        }
        catch (InvalidDataException e)
        {
            await SendErrorQuietlyAsync(0, TubeError.FrameTooLarge, e.Message).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            // The connection broke or the node is stopping.
        }
        catch (Exception e)
        {
            await SendErrorQuietlyAsync(0, TubeError.Internal, _session.Node.InternalError("the connection", _session.Id, e)).ConfigureAwait(false);
        }
        finally
        {
            await _session.EndAsync(CloseAsync).ConfigureAwait(false);
            _ring?.Dispose(); // every request has ended: nothing answers on the ring any more
        }
    }

    /// <summary>
    /// A request on the control ring, on its receiving thread: a slot first (waiting here is the
    /// ring's back-pressure), then the request, which completes in place when it never waits (Where,
    /// Publish, Release, Sync: no thread hop) and otherwise continues on the thread pool.
    /// </summary>
    private void OnRingRequest(ControlFrame frame, CancellationToken stop)
    {
        _session.Enter();
        _ = HandleAsync(frame.Type, frame.RequestId, frame.Payload, onRing: true);
    }

    /// <summary>The ring's receiving thread stopped: a corrupt ring ends the session with a word on the socket; any other end ends it too.</summary>
    private void OnRingEnd(Exception? end)
    {
        if (end is InvalidDataException corrupt)
        {
            _ = Task.Run(async () =>
            {
                await SendErrorQuietlyAsync(0, TubeError.BadRequest, $"The control ring was corrupted: {corrupt.Message}").ConfigureAwait(false);
                _session.Abort();
            });
            return;
        }

        if (end is not null and not OperationCanceledException and not ObjectDisposedException)
        {
            _session.Node.InternalError("the control ring", _session.Id, end);
        }

        _session.Abort();
    }

    private async Task CloseAsync()
    {
        _ringReplies?.Close(); // answers still waiting for room fail now: their requests let go of their slots
        if (_ringRequests is not null)
        {
            _ringRequests.Dispose(); // its thread has left (the session's end cancelled its wait for a slot)
            _session.Node.ReturnRingSession(); // before the session counts as ended
        }

        await FrameWriter.Quietly(_reader.CompleteAsync()).ConfigureAwait(false);
        await _writer.CompleteAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Hello (or the network gateway's GatewayHello, <see cref="CheckGateway"/>) within the timeout,
    /// with exactly one descriptor, the window (two with a control ring, for either). False when the session must end.
    /// </summary>
    private async Task<bool> HandshakeAsync(CancellationToken ended)
    {
        var timeoutAfter = _session.Node.Settings.HelloTimeout;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ended);
        timeout.CancelAfter(timeoutAfter);
        HelloFrame? hello;
        try
        {
            hello = await _receiveHello(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ended.IsCancellationRequested)
        {
            await SendErrorQuietlyAsync(0, TubeError.BadRequest, $"No Hello within {timeoutAfter.TotalSeconds:0.###} s.").ConfigureAwait(false);
            return false;
        }

        if (hello is null)
        {
            return false;
        }

        if (hello.Type == FrameType.Status)
        {
            await AnswerStatusAsync(hello).ConfigureAwait(false);
            return false; // one question per connection
        }

        HelloOk ok;
        try
        {
            if (hello.Type == FrameType.GatewayHello)
            {
                var relayed = Payload.Read<GatewayHello>(hello.Payload); // a wrong version first: VersionMismatch; a key of another length: BadRequest
                CheckGateway(relayed); // before the ring: only the node's gateway may take a ring session this way
                var window = relayed.RingBytes != 0 ? AdoptRing(relayed.RingBytes, hello.Descriptors) : hello.Descriptors;
                ok = _session.OpenGateway(relayed, window) with { Ring = _ring is not null };
            }
            else
            {
                if (_helloRefusal is { } refused)
                {
                    throw new TubeException(TubeError.AccessDenied, refused);
                }

                var request = hello.Type == FrameType.Hello
                    ? Payload.Read<Hello>(hello.Payload) // a wrong version first: VersionMismatch
                    : throw new TubeException(TubeError.BadRequest, "The first frame must be Hello.");
                var window = hello.Descriptors;
                if (request.RingBytes != 0)
                {
                    window = AdoptRing(request.RingBytes, hello.Descriptors);
                }

                ok = _session.Open(request, window) with { Ring = _ring is not null };
            }
        }
        catch (Exception e)
        {
            foreach (var descriptor in hello.Descriptors)
            {
                descriptor.Dispose(); // Open closes them itself; a Hello it never saw has them still open
            }

            if (_ring is not null)
            {
                _ring.Dispose();
                _ring = null;
                _session.Node.ReturnRingSession();
            }

            var refused = e as TubeException ?? new TubeException(TubeError.BadRequest, e.Message);
            await SendErrorQuietlyAsync(hello.RequestId, refused.Error, refused.Reason).ConfigureAwait(false);
            return false;
        }

        if (_ring is { } ring)
        {
            // At most one answer per request slot waits (each request keeps its slot until its answer is in the ring), and the node's pushes.
            _ringReplies = new ControlRingSender(ring, _session.Node.Settings.StalledClientTimeout, 2 * _session.Node.Settings.MaxRequestsInFlight, _ => _session.Abort());
            _ringRequests = new ControlRingReceiver(ring, _session.Node.Settings.MaxFrameBytes, OnRingRequest, OnRingEnd, name: $"faastube-session-{_session.Id}");
        }

        await _writer.SendAsync(FrameType.Ok, hello.RequestId, Payload.Writer(ok).Memory, CancellationToken.None).ConfigureAwait(false);
        return true;
    }

    /// <summary>
    /// Who may send GatewayHello: the network gateway the node spawned, which runs as the node's own
    /// user and holds the node's <see cref="TubeNode.GatewayKey"/>. A node without a key, a peer of
    /// another user, or another key: <see cref="TubeError.AccessDenied"/> (the key compared in fixed
    /// time, so the answer's timing tells nothing of it). <see cref="TubeNodeOptions.AllowedUids"/>
    /// is not asked: it says which local users are clients, and the gateway is the node's own part.
    /// </summary>
    private void CheckGateway(GatewayHello hello)
    {
        if (_session.Node.GatewayKey is not { } key)
        {
            throw new TubeException(TubeError.AccessDenied, "This node runs no network gateway: GatewayHello is refused (a local client sends Hello).");
        }

        uint own = Native.Interop.Libc.getuid();
        if (_session.Uid != own)
        {
            throw new TubeException(TubeError.AccessDenied, $"GatewayHello comes only from the node's own user ({own}); user {_session.Uid} sent it.");
        }

        if (!CryptographicOperations.FixedTimeEquals(key, hello.Key))
        {
            throw new TubeException(TubeError.AccessDenied, "GatewayHello with a key that is not the node's gateway key.");
        }

        // The key is the gateway's; so is the process: a key read out of it (or out of a core) by another process of the user is not enough.
        if (_session.Node.Gateway is { } gateway && _session.Pid != gateway.ProcessId)
        {
            throw new TubeException(TubeError.AccessDenied, $"GatewayHello comes only from the node's network gateway (pid {gateway.ProcessId}); process {_session.Pid} sent it.");
        }
    }

    /// <summary>
    /// The admin request, a connection's only frame: the node's own user or an admin uid
    /// (<see cref="TubeNode.MayAdminister"/>) gets the status, bounded by the node's caps
    /// (<see cref="NodeStatusBuilder"/>); anyone else <see cref="TubeError.AccessDenied"/>. No window,
    /// no workflow: descriptors that came with it are closed.
    /// </summary>
    private async Task AnswerStatusAsync(HelloFrame frame)
    {
        foreach (var descriptor in frame.Descriptors)
        {
            descriptor.Dispose();
        }

        try
        {
            var request = Payload.Read<Status>(frame.Payload);
            if (!_session.Node.MayAdminister(_session.Uid))
            {
                throw new TubeException(TubeError.AccessDenied, $"User {_session.Uid} may not ask for this node's status (the node's own user and TubeNodeOptions.AdminUids may).");
            }

            var answer = new StatusOk(NodeStatusBuilder.Json(_session.Node, request.Limit));
            await SendAsync(FrameType.Ok, frame.RequestId, Payload.Writer(answer).Memory).ConfigureAwait(false);
        }
        catch (TubeException e)
        {
            await SendErrorQuietlyAsync(frame.RequestId, e.Error, e.Reason).ConfigureAwait(false);
        }
        catch (InvalidDataException e)
        {
            await SendErrorQuietlyAsync(frame.RequestId, TubeError.BadRequest, e.Message).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not (IOException or ObjectDisposedException or OperationCanceledException))
        {
            await SendErrorQuietlyAsync(frame.RequestId, TubeError.Internal, _session.Node.InternalError("Status", _session.Id, e)).ConfigureAwait(false);
        }
    }

    /// <summary>The control ring: the second of exactly two descriptors, checked and mapped (<see cref="ControlRing.Adopt"/>); the window's alone is left for the session.</summary>
    private IReadOnlyList<SafeFileHandle> AdoptRing(long ringBytes, IReadOnlyList<SafeFileHandle> descriptors)
    {
        if (descriptors.Any(d => d.IsInvalid))
        {
            throw new TubeException(TubeError.OutOfMemory, "The node could not take the Hello's descriptors (it is out of descriptors, or more came than it keeps); try again.");
        }

        if (descriptors.Count != 2)
        {
            throw new TubeException(TubeError.BadRequest, $"A Hello with a control ring must carry two descriptors, the window and the ring; it carried {descriptors.Count}.");
        }

        if (ringBytes < 0 || ringBytes > MaxRingBytes)
        {
            throw new TubeException(TubeError.BadRequest, $"A control ring of {ringBytes} bytes is over the node's limit of {MaxRingBytes}.");
        }

        if (!_session.Node.TryTakeRingSession())
        {
            descriptors[1].Dispose(); // the node has as many ring sessions as it runs threads for: this one is served on the socket
            return [descriptors[0]];
        }

        try
        {
            _ring = ControlRing.Adopt(descriptors[1], ringBytes);
        }
        catch
        {
            _session.Node.ReturnRingSession();
            throw;
        }

        return [descriptors[0]];
    }

    /// <summary>One request: decoded, executed, answered where it came from (a one-way request only when it failed); its slot is given back at the end.</summary>
    private async Task HandleAsync(FrameType type, uint requestId, byte[] payload, bool onRing = false)
    {
        try
        {
            var (reply, _) = await _session.ExecuteFrameAsync(type, payload).ConfigureAwait(false);
            if (OneWay.Is(type))
            {
                return; // applied; only an error is answered
            }

            var writer = new PayloadWriter();
            reply.Write(writer);
            await AnswerAsync(onRing, FrameType.Ok, requestId, writer.Memory).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_session.Ended.IsCancellationRequested)
        {
            // The session ended under the request: cancelled, nobody is there to answer.
        }
        catch (TubeException e) when (onRing)
        {
            await AnswerAsync(onRing, FrameType.Error, requestId, ErrorPayload(e.Error, e.Reason, _ring!.MaxPayloadBytes)).ConfigureAwait(false);
        }
        catch (TubeException e)
        {
            await SendErrorQuietlyAsync(requestId, e.Error, e.Reason).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ObjectDisposedException or IOException)
        {
            // The connection is closed (the session ended under the request): nobody is there to answer.
        }
        catch (Exception e)
        {
            // Anything else is the node's fault: logged with a reference; the client gets the reference, never the details.
            string message = _session.Node.InternalError(type.ToString(), _session.Id, e);
            if (onRing)
            {
                await AnswerAsync(onRing, FrameType.Error, requestId, ErrorPayload(TubeError.Internal, message, _ring!.MaxPayloadBytes)).ConfigureAwait(false);
            }
            else
            {
                await SendErrorQuietlyAsync(requestId, TubeError.Internal, message).ConfigureAwait(false);
            }
        }
        finally
        {
            _session.Exit();
        }
    }

    /// <summary>An answer on the ring (in order, never blocking: ControlRingSender.cs) or on the socket; a connection already closed is nobody to answer.</summary>
    private async Task AnswerAsync(bool onRing, FrameType type, uint requestId, ReadOnlyMemory<byte> payload)
    {
        try
        {
            if (onRing)
            {
                await _ringReplies!.SendAsync(type, requestId, payload.Span).ConfigureAwait(false); // the request keeps its slot until its answer is in the ring
            }
            else
            {
                await SendAsync(type, requestId, payload).ConfigureAwait(false);
            }
        }
        catch (InvalidDataException)
        {
            _session.Abort(); // the client corrupted the reply ring's counters
        }
        catch (Exception e) when (e is ObjectDisposedException or IOException)
        {
            // The connection is closed: the session is ending, nobody is there to answer.
        }
    }

    /// <summary>An error's payload, its message cut to 2,000 characters and to <paramref name="maxBytes"/> in all (a small ring's limit).</summary>
    private static ReadOnlyMemory<byte> ErrorPayload(TubeError error, string message, int maxBytes = int.MaxValue)
    {
        message = message.Length > 2000 ? message[..2000] : message;
        while (true)
        {
            var payload = Payload.Writer(new Error(error, message)).Memory;
            if (payload.Length <= maxBytes || message.Length == 0)
            {
                return payload;
            }

            message = message[..(message.Length / 2)];
        }
    }

    private Task SendErrorAsync(uint requestId, TubeError error, string message) =>
        SendAsync(FrameType.Error, requestId, ErrorPayload(error, message)).AsTask();

    private async Task SendErrorQuietlyAsync(uint requestId, TubeError error, string message)
    {
        try
        {
            await SendErrorAsync(requestId, error, message).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or ObjectDisposedException or OperationCanceledException)
        {
            // The client is gone; the session's end cleans up.
        }
    }

    private ValueTask SendAsync(FrameType type, uint requestId, ReadOnlyMemory<byte> payload) =>
        _writer.SendAsync(type, requestId, payload, CancellationToken.None);
}
