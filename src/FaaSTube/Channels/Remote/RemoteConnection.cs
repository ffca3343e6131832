using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using FaaSTube.Channels.Client;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Native;
using FaaSTube.Native.Ucx;

namespace FaaSTube.Channels.Remote;

/// <summary>
/// A client on another machine (<see cref="TubeClientOptions.Address"/> <c>ucx://host:port</c>): one
/// UCX endpoint on a worker of its own (one progress thread, asleep when idle). Requests and answers
/// are the socket's frames as tagged messages; the client's window is a local mirror of the window
/// the node allocated for it, at the same offsets: a PutPart sends its range's bytes to the node
/// (received straight into the node's window) and a GetToHost part receives its range from the node
/// (sent from the node's window after its DMA) before the call completes, so <see cref="TubeClient"/>'s
/// Put and Get-to-host code is the same as over the socket. Two-way requests take ids
/// 1..2^31-1, one-way requests ids with the top bit set (as <see cref="FramedConnection"/>). When the
/// endpoint fails (the node died, the network broke) every pending and later call fails with
/// <see cref="TubeNodeUnavailableException"/>; a call also fails so when no answer comes within
/// <see cref="TubeClientOptions.CallTimeout"/>.
/// </summary>
internal sealed class RemoteConnection : INodeConnection
{
    private const uint OneWayBit = 0x8000_0000;
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<byte[]>> _pending = new();
    private readonly UcxContext _context;
    private readonly UcxWorker _worker;
    private readonly Memory<byte> _window;
    private readonly TimeSpan _callTimeout;
    private readonly Action<TubeException, IRequest?> _oneWayFailed; // the remote client does not remember its one-way requests yet: a refusal names none
    private readonly string _address;
    private UcxEndpoint? _endpoint;
    private ulong _session;
    private Task _answers = Task.CompletedTask;
    private uint _nextRequest;
    private Exception? _dead;
    private int _disposed;

    private RemoteConnection(UcxContext context, UcxWorker worker, Memory<byte> window, TimeSpan callTimeout, Action<TubeException, IRequest?> oneWayFailed, string address)
    {
        _context = context;
        _worker = worker;
        _window = window;
        _callTimeout = callTimeout;
        _oneWayFailed = oneWayFailed;
        _address = address;
    }

    /// <inheritdoc/>
    public bool IsLost => Volatile.Read(ref _dead) is not null;

    private UcxEndpoint Endpoint => _endpoint ?? throw new InvalidOperationException("Not connected.");

    /// <summary>Connects, answers the node's challenge with the proof of <paramref name="secret"/>, and sends Hello.</summary>
    /// <exception cref="TubeNodeUnavailableException">No node answers at <paramref name="remote"/>.</exception>
    /// <exception cref="TubeException">The node refused the Hello (AccessDenied: unknown workflow or wrong secret).</exception>
    public static async Task<(RemoteConnection Connection, HelloOk Ok)> ConnectAsync(
        IPEndPoint remote, string address, TubeClientOptions options, Memory<byte> window, Hello hello, byte[] secret, Action<TubeException, IRequest?> oneWayFailed, CancellationToken cancellationToken)
    {
        var context = UcxContext.Create(options.UcxSettings);
        var connection = new RemoteConnection(context, UcxWorker.Create(context, "faastube-remote-client"), window, options.CallTimeout, oneWayFailed, address);
        try
        {
            connection._endpoint = await UcxEndpoint.ConnectAsync(connection._worker, remote).ConfigureAwait(false);
            var challenge = new byte[256];
            UcxMessage message;
            try
            {
                message = await connection.Endpoint.ReceiveAsync(challenge, RemoteWire.Tag(RemoteKind.Challenge, 0), RemoteWire.KindOnly, cancellationToken)
                    .WaitAsync(options.CallTimeout, cancellationToken).ConfigureAwait(false);
            }
            catch (UcxException e) when (e.Status == UcsStatus.ErrRejected)
            {
                throw new TubeException(TubeError.AccessDenied, $"The node at {address} rejected the connection: it has as many remote connections (in their handshake, or authenticated) as it allows.");
            }
            catch (Exception e) when (e is UcxException or TimeoutException or ObjectDisposedException)
            {
                throw new TubeNodeUnavailableException($"No FaaSTube node answers on {address}.", e);
            }

            var (version, session, nonce) = RemoteWire.ReadChallenge(challenge.AsSpan(0, (int)message.Length));
            if (version != Frames.Version)
            {
                throw new TubeException(TubeError.VersionMismatch, $"The node at {address} speaks protocol {version}; this client {Frames.Version}.");
            }

            connection._session = session;
            connection._answers = Task.Run(connection.ReadAnswersAsync, CancellationToken.None);
            var payload = Payload.Writer(hello);
            payload.Bytes(RemoteWire.Proof(secret, nonce, hello.Workflow, hello.Function));
            var ok = Payload.Read<HelloOk>(await connection.SendAndWaitAsync(FrameType.Hello, payload.Memory, RemoteKind.Hello, cancellationToken).ConfigureAwait(false));
            return (connection, ok);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public async Task<TReply> CallAsync<TReply>(IRequest<TReply> request, CancellationToken cancellationToken)
        where TReply : IPayload<TReply>
    {
        var writer = Traced();
        request.Write(writer);
        var payload = writer.Memory;
        byte[] reply = request switch
        {
            PutPart part => await PutPartAsync(part, payload, cancellationToken).ConfigureAwait(false),
            GetToHost part => await GetToHostAsync(part, payload, cancellationToken).ConfigureAwait(false),
            _ => await SendAndWaitAsync(request.Type, payload, RemoteKind.Request, cancellationToken).ConfigureAwait(false),
        };
        return Payload.Read<TReply>(reply);
    }

    public async ValueTask PostAsync(IRequest<Empty> request)
    {
        if (Volatile.Read(ref _dead) is not null)
        {
            return; // the node is gone, and with it what this request would have changed
        }

        uint id = (Interlocked.Increment(ref _nextRequest) & ~OneWayBit) | OneWayBit;
        var payload = Traced();
        request.Write(payload);
        try
        {
            await SendFrameAsync(request.Type, id, payload.Memory, RemoteKind.Request).ConfigureAwait(false);
        }
        catch (Exception e) when (e is UcxException or ObjectDisposedException)
        {
            Fail(e); // every later call says the node is gone
        }
    }

    /// <summary>A request's payload so far: the caller's trace context (docs/protocol.md), which every request after Hello begins with.</summary>
    private static PayloadWriter Traced()
    {
        var payload = new PayloadWriter();
        TraceContext.Of(Activity.Current).Write(payload);
        return payload;
    }

    public async Task<byte[]> CallRawAsync(FrameType type, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        payload = Traced().Raw(payload.Span).Memory; // the forged request after a well-formed trace context
        if (!OneWay.Is(type))
        {
            return await SendAndWaitAsync(type, payload, RemoteKind.Request, cancellationToken).ConfigureAwait(false);
        }

        uint id = (Interlocked.Increment(ref _nextRequest) & ~OneWayBit) | OneWayBit;
        await SendFrameAsync(type, id, payload, RemoteKind.Request).ConfigureAwait(false);
        await CallAsync(new Sync(), cancellationToken).ConfigureAwait(false); // its error, if any, came before Sync's Ok
        return [];
    }

    /// <summary>The part's bytes go out first (the node receives them into its window), then the request; the window range is the caller's again only once UCX is done with it.</summary>
    private async Task<byte[]> PutPartAsync(PutPart part, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        CheckRange(part.WindowOffset, part.Length);
        var bytes = Endpoint.SendAsync(_window.Slice(part.WindowOffset, part.Length), RemoteWire.Tag(RemoteKind.PutData, _session, part.WindowOffset));
        try
        {
            return await SendAndWaitAsync(FrameType.PutPart, payload, RemoteKind.Request, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await SettleAsync(bytes).ConfigureAwait(false);
        }
    }

    /// <summary>The receive for the part's bytes is posted first; after the node's Ok the bytes are in this client's window. On a refusal nothing is sent and the receive is withdrawn.</summary>
    private async Task<byte[]> GetToHostAsync(GetToHost part, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        CheckRange(part.WindowOffset, part.Length);
        using var withdraw = new CancellationTokenSource();
        var bytes = Endpoint.ReceiveAsync(_window.Slice(part.WindowOffset, part.Length), RemoteWire.Tag(RemoteKind.GetData, _session, part.WindowOffset), ulong.MaxValue, withdraw.Token);
        byte[] reply;
        try
        {
            reply = await SendAndWaitAsync(FrameType.GetToHost, payload, RemoteKind.Request, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await withdraw.CancelAsync().ConfigureAwait(false);
            await SettleAsync(bytes).ConfigureAwait(false);
            throw;
        }

        UcxMessage received;
        try
        {
            received = await bytes.WaitAsync(_callTimeout, CancellationToken.None).ConfigureAwait(false); // sent before the Ok; its completion may come after it
        }
        catch (Exception e)
        {
            Fail(e);
            await SettleAsync(bytes).ConfigureAwait(false);
            throw Gone(e);
        }

        return received.Length == part.Length
            ? reply
            : throw new TubeException(TubeError.Internal, $"The node sent {received.Length} bytes for a part of {part.Length}.");
    }

    private void CheckRange(int windowOffset, int length)
    {
        if (windowOffset < 0 || length <= 0 || windowOffset > _window.Length - length || windowOffset % RemoteWire.PageBytes != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(windowOffset), windowOffset, "A remote part starts on a page of the window and ends inside it.");
        }
    }

    /// <summary>
    /// Waits until UCX is done with a window range (a send out of it, a receive into it). One that
    /// does not finish within the call timeout ends the connection: closing the endpoint by force
    /// completes it, so no range is handed back while UCX may still use it.
    /// </summary>
    private async Task SettleAsync(Task operation)
    {
        try
        {
            await operation.WaitAsync(_callTimeout).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        catch (TimeoutException e)
        {
            Fail(e);
            await Endpoint.CloseAsync(force: true).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        await operation.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    private Task SendFrameAsync(FrameType type, uint requestId, ReadOnlyMemory<byte> payload, RemoteKind kind) =>
        Endpoint.SendAsync(Frames.Encode(type, requestId, payload.Span), RemoteWire.Tag(kind, _session));

    private async Task<byte[]> SendAndWaitAsync(FrameType type, ReadOnlyMemory<byte> payload, RemoteKind kind, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _dead) is { } dead)
        {
            throw Gone(dead);
        }

        uint requestId = Interlocked.Increment(ref _nextRequest) & ~OneWayBit;
        if (requestId == 0)
        {
            requestId = Interlocked.Increment(ref _nextRequest) & ~OneWayBit; // 0 is the connection's own errors
        }

        var pending = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[requestId] = pending;
        try
        {
            if (Volatile.Read(ref _dead) is { } died)
            {
                throw Gone(died);
            }

            var sent = SendFrameAsync(type, requestId, payload, kind);
            _ = sent.ContinueWith(t => Fail(t.Exception!.InnerException!), CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            return await pending.Task.WaitAsync(_callTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException e)
        {
            throw new TubeNodeUnavailableException($"The node at {_address} did not answer {type} within {_callTimeout.TotalSeconds:0.#} s.", e);
        }
        finally
        {
            _pending.TryRemove(requestId, out _);
        }
    }

    /// <summary>Answers, one receive at a time, until the endpoint fails or closes (then every call fails).</summary>
    private async Task ReadAnswersAsync()
    {
        var buffer = new byte[1 << 20];
        while (true)
        {
            try
            {
                var message = await Endpoint.ReceiveAsync(buffer, RemoteWire.Tag(RemoteKind.Answer, _session)).ConfigureAwait(false);
                var (type, requestId, payload) = RemoteWire.ReadFrame(buffer.AsSpan(0, (int)message.Length));
                if (requestId == 0 && type == FrameType.Error)
                {
                    Fail(ToException(payload)); // the node ended the connection, and said why
                    return;
                }

                Dispatch(type, requestId, payload);
            }
            catch (Exception e)
            {
                Fail(e);
                return;
            }
        }
    }

    private void Dispatch(FrameType type, uint requestId, byte[] payload)
    {
        if ((requestId & OneWayBit) != 0)
        {
            if (type == FrameType.Error)
            {
                _oneWayFailed(ToException(payload), null);
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

    /// <summary>The node is gone (or refused the connection): every pending call fails now, every later call at once.</summary>
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

    private Exception Gone(Exception cause) => cause is TubeException refused
        ? new TubeException(refused.Error, refused.Reason, refused)
        : new TubeNodeUnavailableException($"The connection to the FaaSTube node at {_address} was lost.", cause);

    /// <summary>Closes the endpoint (the node ends the session and releases what this client held), then the worker and the context.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        Fail(new ObjectDisposedException(nameof(TubeClient)));
        if (_endpoint is { } endpoint)
        {
            try
            {
                await endpoint.CloseAsync(force: false).WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
            }
            catch (Exception)
            {
                await endpoint.CloseAsync(force: true).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }

        await _answers.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _worker.Dispose(); // whatever UCX still had pending fails
        _context.Dispose();
    }
}
