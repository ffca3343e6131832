using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Sockets;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Channels.Transport;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace FaaSTube.Channels.Client;

/// <summary>
/// A client's connection over the node's Unix socket: requests go out as frames through the one
/// <see cref="FrameWriter"/>, answers are matched to their request ids by one read loop, and pushes
/// (CloseSlab) and one-way failures go to their handlers. With a control ring (handed to the node
/// with Hello), every request after Hello goes out on the ring and its answer comes back on it; the
/// socket still carries the node's pushes and tells when the node is gone. Two-way requests take ids 1..2^31-1,
/// one-way requests ids with the top bit set: an <c>Error</c> with such an id is a one-way failure,
/// with nothing to remember per request. When the connection ends, every pending and later call fails.
/// </summary>
internal sealed class FramedConnection : INodeConnection
{
    private const uint OneWayBit = 0x8000_0000;
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<byte[]>> _pending = new();
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<byte[]>> _relayedOneWay = new(); // one-way requests whose refusal is thrown (RelayAsync), until their Sync
    private readonly Socket _socket;
    private readonly PipeReader _reader;
    private readonly FrameWriter _writer;
    private readonly TimeSpan _callTimeout;
    private readonly Action<CloseSlab> _closeSlab;
    private readonly Action<TubeException, IRequest?> _oneWayFailed;
    private readonly (uint Id, IRequest Request)[] _recentOneWay = new (uint, IRequest)[RecentOneWay]; // by id: what a refusal refers to
    private ControlRing? _ring;
    private ControlRingSender? _ringRequests;
    private ControlRingReceiver? _ringAnswers;
    private Task _readLoop = Task.CompletedTask;
    private uint _nextRequest;
    private Exception? _dead;

    /// <summary>One-way requests remembered to name the one a refusal refers to (a refusal comes back quickly; an older one is reported without it).</summary>
    private const int RecentOneWay = 1024;

    /// <summary>How a pending call's completion runs its continuation: on the thread pool (a client's: the caller's code), or inline on the thread that read the answer (the gateway's relay).</summary>
    private readonly TaskCreationOptions _completion;

    /// <param name="socket">The connection to the node.</param>
    /// <param name="ring">The control ring to hand the node with the handshake, or null.</param>
    /// <param name="callTimeout">How long a call waits for its answer.</param>
    /// <param name="closeSlab">The node's CloseSlab pushes.</param>
    /// <param name="oneWayFailed">A one-way request's refusal.</param>
    /// <param name="inlineAnswers">
    /// Whether a call's continuation runs on the thread that read its answer (the control ring's
    /// receiving thread, or the socket's read loop) instead of hopping to the thread pool: only for
    /// callers whose continuations never block, the network gateway's relay, whose continuation is
    /// posting the answer to its UCX progress thread (src/FaaSTube/Channels/Remote/Gateway/GatewayRelay.cs).
    /// </param>
    public FramedConnection(Socket socket, ControlRing? ring, TimeSpan callTimeout, Action<CloseSlab> closeSlab, Action<TubeException, IRequest?> oneWayFailed, bool inlineAnswers = false)
    {
        _completion = inlineAnswers ? TaskCreationOptions.None : TaskCreationOptions.RunContinuationsAsynchronously;
        _socket = socket;
        _ring = ring;
        var stream = new NetworkStream(socket, ownsSocket: true);
        _reader = PipeReader.Create(stream);
        _writer = new FrameWriter(PipeWriter.Create(stream), stream);
        _callTimeout = callTimeout;
        _closeSlab = closeSlab;
        _oneWayFailed = oneWayFailed;
    }

    /// <summary>Whether requests go on the control ring (the node took it).</summary>
    public bool UsesRing => _ringRequests is not null;

    /// <summary>Starts reading and sends Hello with the window's descriptor attached (SCM_RIGHTS), and the ring's after it, before any other frame.</summary>
    public async Task<HelloOk> HelloAsync(Hello hello, SafeFileHandle window, CancellationToken cancellationToken)
    {
        _readLoop = Task.Run(ReadLoopAsync, CancellationToken.None);
        var payload = Payload.Writer(hello with { RingBytes = _ring?.TotalBytes ?? 0 });
        SafeHandle[] descriptors = _ring is null ? [window] : [window, _ring.Descriptor];
        var ok = Payload.Read<HelloOk>(await SendAndWaitAsync(FrameType.Hello, payload.Memory, descriptors, cancellationToken).ConfigureAwait(false));
        UseRingIf(ok.Ring, "faastube-client-ring");
        return ok;
    }

    /// <summary>
    /// The network gateway's handshake for one remote client (<see cref="GatewayHello"/> instead of
    /// Hello, the window's descriptor attached, and the control ring's after it like Hello's): starts
    /// reading, like <see cref="HelloAsync"/>; requests go on the ring if the node took it.
    /// </summary>
    public async Task<HelloOk> GatewayHelloAsync(GatewayHello hello, SafeFileHandle window, CancellationToken cancellationToken)
    {
        _readLoop = Task.Run(ReadLoopAsync, CancellationToken.None);
        var payload = Payload.Writer(hello with { RingBytes = _ring?.TotalBytes ?? 0 });
        SafeHandle[] descriptors = _ring is null ? [window] : [window, _ring.Descriptor];
        var ok = Payload.Read<HelloOk>(await SendAndWaitAsync(FrameType.GatewayHello, payload.Memory, descriptors, cancellationToken).ConfigureAwait(false));
        UseRingIf(ok.Ring, "faastube-relay-ring");
        return ok;
    }

    /// <summary>After the handshake: the ring's sender and receiving thread when the node took it; else the ring is let go (the node serves this connection on the socket: it runs as many ring sessions as it allows).</summary>
    private void UseRingIf(bool taken, string threadName)
    {
        if (!taken && _ring is not null)
        {
            _ring.Dispose();
            _ring = null;
        }

        if (_ring is { } ring)
        {
            _ringRequests = new ControlRingSender(ring, _callTimeout, 1 << 16, RingStuck, fromLastProgress: true);
            _ringAnswers = new ControlRingReceiver(ring, 1 << 20, (f, _) => Dispatch(f.Type, f.RequestId, f.Payload), e => Fail(e ?? new IOException("The control ring was closed.")), name: threadName);
        }
    }

    /// <summary>Completes when the connection has ended (the node closed it, or it was disposed).</summary>
    public Task Completion => _readLoop;

    /// <summary>
    /// A request relayed as it came (<paramref name="tracedPayload"/> begins with its sender's trace
    /// context): a two-way request's answer payload; for a one-way request, an empty payload once the
    /// node has applied it (a <c>Sync</c> after it is answered), or its refusal thrown.
    /// </summary>
    public Task<byte[]> RelayAsync(FrameType type, ReadOnlyMemory<byte> tracedPayload, CancellationToken cancellationToken) =>
        SendRawAsync(type, tracedPayload, throwRefusal: true, cancellationToken);

    public async Task<TReply> CallAsync<TReply>(IRequest<TReply> request, CancellationToken cancellationToken)
        where TReply : IPayload<TReply>
    {
        var payload = TraceContext.BeginPayload();
        request.Write(payload);
        return Payload.Read<TReply>(await SendAndWaitAsync(request.Type, payload.Memory, null, cancellationToken).ConfigureAwait(false));
    }

    public async ValueTask PostAsync(IRequest<Empty> request)
    {
        if (Volatile.Read(ref _dead) is not null)
        {
            return; // the node is gone, and with it what this request would have changed
        }

        var payload = TraceContext.BeginPayload();
        request.Write(payload);
        uint id = (Interlocked.Increment(ref _nextRequest) & ~OneWayBit) | OneWayBit;
        _recentOneWay[id % RecentOneWay] = (id, request); // a torn read of this pair only loses the name: the id is checked
        try
        {
            await SendAsync(request.Type, id, payload.Memory, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or ObjectDisposedException or SocketException)
        {
            // The connection is ending; the read loop reports why to every later call.
        }
    }

    public Task<byte[]> CallRawAsync(FrameType type, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken) =>
        SendRawAsync(type, TraceContext.BeginPayload().Raw(payload.Span).Memory, throwRefusal: false, cancellationToken); // the forged request after a well-formed trace context

    /// <summary>
    /// A request whose payload is written already (its trace context first): a two-way request's
    /// answer; a one-way request is followed by a <c>Sync</c>, so its refusal, if any, was read before
    /// Sync's Ok: thrown when <paramref name="throwRefusal"/>, else reported like any one-way refusal.
    /// </summary>
    private async Task<byte[]> SendRawAsync(FrameType type, ReadOnlyMemory<byte> tracedPayload, bool throwRefusal, CancellationToken cancellationToken)
    {
        if (!OneWay.Is(type))
        {
            return await SendAndWaitAsync(type, tracedPayload, null, cancellationToken).ConfigureAwait(false);
        }

        uint id = (Interlocked.Increment(ref _nextRequest) & ~OneWayBit) | OneWayBit;
        var refused = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (throwRefusal)
        {
            _relayedOneWay[id] = refused;
        }

        try
        {
            await SendAsync(type, id, tracedPayload, cancellationToken).ConfigureAwait(false);
            await CallAsync(new Sync(), cancellationToken).ConfigureAwait(false);
            return refused.Task.IsFaulted ? await refused.Task.ConfigureAwait(false) : [];
        }
        finally
        {
            _relayedOneWay.TryRemove(id, out _);
        }
    }

    /// <summary>The node took nothing off the ring for a call timeout, or left a call that names a window range unanswered for one: the connection is over (its close ends the node's session and frees what it held).</summary>
    private void RingStuck(Exception cause)
    {
        Fail(cause);
        _ = _writer.CompleteAsync().AsTask();
    }

    /// <summary>A frame on the ring once there is one (in order, never blocking), else on the socket.</summary>
    private ValueTask SendAsync(FrameType type, uint requestId, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        if (_ringRequests is { } ring)
        {
            return ring.SendAsync(type, requestId, payload.Span); // in the ring, or queued in order (the node is slow to read)
        }

        return _writer.SendAsync(type, requestId, payload, cancellationToken);
    }

    private async Task<byte[]> SendAndWaitAsync(FrameType type, ReadOnlyMemory<byte> payload, SafeHandle[]? descriptors, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _dead) is { } dead)
        {
            throw Gone(dead); // a refusal that came before this call is still the refusal
        }

        uint requestId = Interlocked.Increment(ref _nextRequest) & ~OneWayBit;
        if (requestId == 0)
        {
            requestId = Interlocked.Increment(ref _nextRequest) & ~OneWayBit; // 0 is the node's pushes
        }

        var pending = new TaskCompletionSource<byte[]>(_completion);
        _pending[requestId] = pending;
        try
        {
            try
            {
                if (descriptors is not null)
                {
                    UnixRights.Send(_socket, Frames.Encode(type, requestId, payload.Span), descriptors);
                }
                else
                {
                    await SendAsync(type, requestId, payload, cancellationToken).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or ObjectDisposedException or SocketException or InvalidDataException)
            {
                // The node may have closed after telling why (access denied, bad version): let the
                // reader see that frame first, so the caller gets the reason, not a broken pipe.
                if (Volatile.Read(ref _dead) is null)
                {
                    await ((Task)Task.WhenAny(_readLoop, Task.Delay(_callTimeout, cancellationToken))).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                }

                Fail(e);
            }

            return await pending.Task.WaitAsync(_callTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException e)
        {
            if (Requests.NamesWindowRange(type))
            {
                // The node may still copy into or out of the range it names, and the caller gives it
                // back now: the connection ends (the node's session with it, which waits for that copy),
                // so no later call of this client meets a range the node still writes.
                RingStuck(e);
            }

            throw new TubeNodeUnavailableException($"The node did not answer {type} within {_callTimeout.TotalSeconds:0.#} s.", e);
        }
        finally
        {
            _pending.TryRemove(requestId, out _);
        }
    }

    private async Task ReadLoopAsync()
    {
        Exception? error = null;
        try
        {
            while (true)
            {
                var frame = await Frames.ReadAsync(_reader, 1 << 20, CancellationToken.None).ConfigureAwait(false);
                if (frame is not { } f)
                {
                    break;
                }

                if (f.Type == FrameType.CloseSlab)
                {
                    _closeSlab(Payload.Read<CloseSlab>(f.Payload));
                    continue;
                }

                if (f.RequestId == 0 && f.Type == FrameType.Error)
                {
                    error = ToException(f.Payload); // the node refused the whole connection
                    break;
                }

                Dispatch(f.Type, f.RequestId, f.Payload);
            }
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ObjectDisposedException or InvalidOperationException or SocketException)
        {
            error = e;
        }

        Fail(error ?? new IOException("The node closed the connection."));
    }

    /// <summary>An answer to its pending call (whose continuation runs on the thread pool, or here with inline answers), or a one-way request's failure to the handler (an answer nobody waits for any more is dropped).</summary>
    private void Dispatch(FrameType type, uint requestId, byte[] payload)
    {
        if ((requestId & OneWayBit) != 0)
        {
            if (type == FrameType.Error && _relayedOneWay.TryGetValue(requestId, out var relayed))
            {
                relayed.TrySetException(ToException(payload));
                return;
            }

            if (type == FrameType.Error)
            {
                var recent = _recentOneWay[requestId % RecentOneWay];
                _oneWayFailed(ToException(payload), recent.Id == requestId ? recent.Request : null);
            }

            return;
        }

        if (_pending.TryGetValue(requestId, out var pending))
        {
            if (type == FrameType.Ok)
            {
                pending.TrySetResult(payload);
            }
            else
            {
                pending.TrySetException(ToException(payload));
            }
        }
    }

    private static TubeException ToException(byte[] payload)
    {
        var (error, message) = Payload.Read<Error>(payload);
        return new TubeException(error, message);
    }

    /// <inheritdoc/>
    public bool IsLost => Volatile.Read(ref _dead) is not null;

    /// <summary>The node is gone: every pending call fails now, every later call at once.</summary>
    private void Fail(Exception cause)
    {
        if (Interlocked.CompareExchange(ref _dead, cause, null) is not null)
        {
            return;
        }

        var gone = Gone(cause);
        foreach (var pending in _pending.Values)
        {
            pending.TrySetException(gone);
        }
    }

    /// <summary>What a call gets once the connection is over: the node's refusal as it was sent, else "unavailable".</summary>
    private static Exception Gone(Exception cause) => cause is TubeException refused
        ? new TubeException(refused.Error, refused.Reason, refused)
        : new TubeNodeUnavailableException("The connection to the FaaSTube node was lost.", cause);

    /// <summary>Closes the connection (the node releases everything this client held).</summary>
    public async ValueTask DisposeAsync()
    {
        Fail(new ObjectDisposedException(nameof(TubeClient)));
        await _writer.CompleteAsync().ConfigureAwait(false);
        await _readLoop.ConfigureAwait(false);
        await FrameWriter.Quietly(_reader.CompleteAsync()).ConfigureAwait(false);
        _ringAnswers?.Dispose(); // its thread has left the ring
        _ring?.Dispose();
    }
}
