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
/// UCX endpoint on a worker of its own (one progress thread, asleep when idle), active messages only
/// (docs/protocol.md, Remote clients). Requests are the socket's frames as message headers, sent
/// with UCP_AM_SEND_FLAG_REPLY (the node drops what does not come on its session's endpoint); the
/// client's window is a local mirror of the window the node allocated for it, at the same offsets:
/// a PutPart carries its range's bytes as its data (received straight into the node's window) and a
/// GetToHost part's Ok carries the range's bytes, received into this window before the call
/// completes, so <see cref="TubeClient"/>'s Put and Get-to-host code is the same as over the socket.
/// At most the node's credits (told in its challenge) requests are unanswered at once: every request
/// is answered, a one-way one with an empty Ok unless it failed. Two-way requests take ids
/// 1..2^31-1, one-way requests ids with the top bit set (as <see cref="FramedConnection"/>). When the
/// endpoint fails (the node died, the network broke), or a call gets no answer within
/// <see cref="TubeClientOptions.CallTimeout"/>, every pending and later call fails with
/// <see cref="TubeNodeUnavailableException"/>.
/// </summary>
internal sealed class RemoteConnection : INodeConnection, IUcxMessageHandler
{
    private const uint OneWayBit = 0x8000_0000;

    /// <summary>The most an answer's frame may be (node to client).</summary>
    private const int MaxAnswerBytes = 1 << 20;

    private readonly ConcurrentDictionary<uint, Pending> _pending = new();
    private readonly UcxContext _context;
    private readonly UcxWorker _worker;
    private readonly Memory<byte> _window;
    private readonly TimeSpan _callTimeout;
    private readonly Action<TubeException, IRequest?> _oneWayFailed;
    private readonly string _address;
    private readonly TaskCompletionSource<byte[]> _challenge = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private SemaphoreSlim _credits = new(1, 1);
    private int _maxRequestBytes = RemoteWire.MaxHelloBytes;
    private UcxEndpoint? _endpoint;
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

    /// <summary>A request waiting for its answer: the caller's completion (none for a one-way request), and the memory a GetToHost part's bytes go to (a window range, or the caller's own memory).</summary>
    private sealed class Pending(bool counted, Memory<byte> target = default, IRequest? request = null, bool upTo = false)
    {
        private const int Waiting = 0;
        private const int Writing = 1;
        private const int Abandoned = 2;
        private int _target;

        /// <summary>Completes once nothing writes into <see cref="Target"/> any more (its bytes arrived, or their receive failed).</summary>
        public TaskCompletionSource Written { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>On the progress thread, before the answer's bytes are written into <see cref="Target"/>: false when the caller has already let go of it (nothing may be written).</summary>
        public bool TryStartWriting() => Interlocked.CompareExchange(ref _target, Writing, Waiting) == Waiting;

        /// <summary>The caller lets go of <see cref="Target"/>: true when bytes are being written into it (wait for <see cref="Written"/>), false when none will be.</summary>
        public bool Abandon() => Interlocked.CompareExchange(ref _target, Abandoned, Waiting) == Writing;

        /// <summary>A one-way request, to name in its refusal.</summary>
        public IRequest? Request { get; } = request;

        public TaskCompletionSource<byte[]> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Memory<byte> Target { get; } = target;

        /// <summary>Whether the answer may bring fewer bytes than <see cref="Target"/> holds, or none (a GetWhole's); else exactly as many.</summary>
        public bool UpTo { get; } = upTo;

        /// <summary>Whether it holds one of the node's credits (Hello does not).</summary>
        public bool Counted { get; } = counted;
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
        var context = UcxContext.CreateForActiveMessages(options.UcxSettings);
        ulong ticket = RemoteWire.NewTicket(secret, TimeProvider.System); // the listener rejects a connection request without one
        var connection = new RemoteConnection(context, UcxWorker.Create(context, "faastube-remote-client", ticket), window, options.CallTimeout, oneWayFailed, address);
        try
        {
            await connection._worker.SetMessageHandlerAsync((uint)RemoteMessage.Challenge, connection).ConfigureAwait(false);
            await connection._worker.SetMessageHandlerAsync((uint)RemoteMessage.Answer, connection).ConfigureAwait(false);
            await connection._worker.SetMessageHandlerAsync((uint)RemoteMessage.Ping, connection).ConfigureAwait(false);
            connection._endpoint = await UcxEndpoint.ConnectAsync(connection._worker, remote, sendClientId: true).ConfigureAwait(false);
            _ = connection._endpoint.Failed.ContinueWith(static (t, s) => ((RemoteConnection)s!).Fail(t.Result), connection, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            byte[] challenge;
            try
            {
                challenge = await connection._challenge.Task.WaitAsync(options.CallTimeout, cancellationToken).ConfigureAwait(false);
            }
            catch (UcxException e) when (e.Status == UcsStatus.ErrRejected)
            {
                throw new TubeException(TubeError.AccessDenied, $"The node at {address} rejected the connection: it has as many remote connections (in their handshake, or authenticated) as it allows, or it does not take this workflow's connect ticket (a wrong secret, or clocks more than 30 s apart).");
            }
            catch (Exception e) when (e is UcxException or TimeoutException or ObjectDisposedException)
            {
                throw new TubeNodeUnavailableException($"No FaaSTube node answers on {address}.", e);
            }

            var (version, nonce, credits, maxRequestBytes) = RemoteWire.ReadChallenge(challenge);
            if (version != Frames.Version)
            {
                throw new TubeException(TubeError.VersionMismatch, $"The node at {address} speaks protocol {version}; this client {Frames.Version}.");
            }

            connection._credits = new SemaphoreSlim(credits, credits);
            var payload = Payload.Writer(hello);
            payload.Bytes(RemoteWire.Proof(secret, nonce, hello.Workflow, hello.Function));
            var ok = Payload.Read<HelloOk>(await connection.SendAndWaitAsync(RemoteMessage.Hello, FrameType.Hello, payload.Memory, default, default, cancellationToken).ConfigureAwait(false));
            connection._maxRequestBytes = maxRequestBytes;
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
        var writer = TraceContext.BeginPayload();
        request.Write(writer);
        var (data, target) = Requests.WindowRangeOf(request) switch
        {
            (int offset, int length, false) => (Range(offset, length), default),
            (int offset, int length, true) => (default, Range(offset, length)),
            null => (default(Memory<byte>), default(Memory<byte>)),
        };
        return Payload.Read<TReply>(await SendAndWaitAsync(RemoteMessage.Request, request.Type, writer.Memory, data, target, cancellationToken, upTo: request is GetWhole).ConfigureAwait(false));
    }

    /// <summary>
    /// A PutPart whose bytes are sent from <paramref name="source"/> (the caller's own memory, pinned
    /// while UCX reads it) instead of the window mirror: the node receives them into the window range
    /// the part names, as always. Returns once UCX is done with <paramref name="source"/>.
    /// </summary>
    public Task PutPartFromAsync(PutPart part, ReadOnlyMemory<byte> source) =>
        SendPartAsync<PutPart, Empty>(part, part.WindowOffset, part.Length, source, default);

    /// <summary>A PutWhole whose bytes are sent from <paramref name="source"/>, as <see cref="PutPartFromAsync"/>; returns the id once the node has committed it.</summary>
    public Task<PutBeginOk> PutWholeFromAsync(PutWhole whole, ReadOnlyMemory<byte> source) =>
        SendPartAsync<PutWhole, PutBeginOk>(whole, whole.WindowOffset, whole.Length, source, default);

    /// <summary>
    /// A GetToHost part whose bytes are received straight into <paramref name="destination"/> (the
    /// caller's own memory) instead of the window mirror. Returns only once nothing writes into
    /// <paramref name="destination"/> any more, also when it fails.
    /// </summary>
    public Task GetToHostIntoAsync(GetToHost part, Memory<byte> destination) =>
        SendPartAsync<GetToHost, Empty>(part, part.WindowOffset, part.Length, default, destination);

    /// <summary>
    /// A GetWhole whose data, when it fits, is received straight into the start of
    /// <paramref name="destination"/> (its <see cref="GetWhole.MaxLength"/> bytes); returns the Get's
    /// answer (a length over the most means no bytes came) once nothing writes into it any more.
    /// </summary>
    public Task<GetOk> GetWholeIntoAsync(GetWhole whole, Memory<byte> destination) =>
        SendPartAsync<GetWhole, GetOk>(whole, whole.WindowOffset, whole.MaxLength, default, destination, upTo: true);

    /// <summary>
    /// A part whose bytes come from or go to the caller's memory (one of the two is given, of the
    /// part's length; <paramref name="upTo"/>: the answer may bring fewer bytes, or none); the window
    /// range it names is checked all the same.
    /// </summary>
    private async Task<TReply> SendPartAsync<TPart, TReply>(TPart part, int windowOffset, int length, ReadOnlyMemory<byte> source, Memory<byte> destination, bool upTo = false)
        where TPart : IRequest<TReply>
        where TReply : IPayload<TReply>
    {
        int given = source.IsEmpty ? destination.Length : source.Length;
        if (given != length)
        {
            throw new ArgumentException($"A part of {length} bytes moved from or into {given}.", source.IsEmpty ? nameof(destination) : nameof(source));
        }

        _ = Range(windowOffset, length); // the range the node receives into or copies through: inside the window
        var writer = TraceContext.BeginPayload();
        part.Write(writer);
        return Payload.Read<TReply>(await SendAndWaitAsync(RemoteMessage.Request, part.Type, writer.Memory, source, destination, CancellationToken.None, upTo).ConfigureAwait(false));
    }

    public async ValueTask PostAsync(IRequest<Empty> request)
    {
        var payload = TraceContext.BeginPayload();
        request.Write(payload);
        try
        {
            await PostCoreAsync(request.Type, payload.Memory, request).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TubeNodeUnavailableException or TubeException)
        {
            // The node is gone, and with it what this request would have changed; the next call says so.
        }
    }

    /// <summary>A one-way request: a credit, then sent; its answer (an empty Ok, or its refusal for the one-way handler) only gives the credit back.</summary>
    private async Task PostCoreAsync(FrameType type, ReadOnlyMemory<byte> payload, IRequest? request = null)
    {
        ThrowIfDead();
        CheckSize(type, payload);
        await TakeCreditAsync(CancellationToken.None).ConfigureAwait(false);
        uint id = (Interlocked.Increment(ref _nextRequest) & ~OneWayBit) | OneWayBit;
        _pending[id] = new Pending(counted: true, request: request);
        _ = Endpoint.SendMessageAsync((uint)RemoteMessage.Request, Frames.Encode(type, id, payload.Span), reply: true)
            .ContinueWith(static (t, s) => ((RemoteConnection)s!).Fail(t.Exception!.InnerException!), this, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    public async Task<byte[]> CallRawAsync(FrameType type, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        payload = TraceContext.BeginPayload().Raw(payload.Span).Memory; // the forged request after a well-formed trace context
        if (!OneWay.Is(type))
        {
            return await SendAndWaitAsync(RemoteMessage.Request, type, payload, default, default, cancellationToken).ConfigureAwait(false);
        }

        await PostCoreAsync(type, payload).ConfigureAwait(false);
        await CallAsync(new Sync(), cancellationToken).ConfigureAwait(false); // its error, if any, came before Sync's Ok
        return [];
    }

    private Memory<byte> Range(int windowOffset, int length)
    {
        if (windowOffset < 0 || length <= 0 || windowOffset > _window.Length - length)
        {
            throw new ArgumentOutOfRangeException(nameof(windowOffset), windowOffset, "A remote part names a range inside the window.");
        }

        return _window.Slice(windowOffset, length);
    }

    /// <summary>A frame over the node's limit for remote requests (told in its challenge) is refused here: the node would close the connection for it.</summary>
    private void CheckSize(FrameType type, ReadOnlyMemory<byte> payload)
    {
        if (Frames.HeaderBytes + payload.Length > _maxRequestBytes)
        {
            throw new TubeException(TubeError.FrameTooLarge, $"{type} of {Frames.HeaderBytes + payload.Length} bytes is over the node's limit of {_maxRequestBytes} for remote requests.");
        }
    }

    private void ThrowIfDead()
    {
        if (Volatile.Read(ref _dead) is { } dead)
        {
            throw Gone(dead);
        }
    }

    /// <summary>One of the node's credits; none within the call timeout: the node stopped answering, the connection is over.</summary>
    private async Task TakeCreditAsync(CancellationToken cancellationToken)
    {
        try
        {
            if (!await _credits.WaitAsync(_callTimeout, cancellationToken).ConfigureAwait(false))
            {
                var stuck = new TimeoutException($"The node at {_address} answered none of {_credits.CurrentCount} requests within {_callTimeout.TotalSeconds:0.#} s.");
                Fail(stuck);
                CloseByForce();
                throw Gone(stuck);
            }
        }
        catch (ObjectDisposedException e)
        {
            throw Gone(e);
        }
    }

    /// <summary>
    /// Sends a request (<paramref name="data"/>: a PutPart's bytes; <paramref name="target"/>: where a
    /// GetToHost part's bytes go) and waits for its answer. No answer within the call timeout ends
    /// the connection: its credit and any window range it uses cannot be taken back otherwise.
    /// </summary>
    private async Task<byte[]> SendAndWaitAsync(RemoteMessage kind, FrameType type, ReadOnlyMemory<byte> payload, ReadOnlyMemory<byte> data, Memory<byte> target, CancellationToken cancellationToken, bool upTo = false)
    {
        ThrowIfDead();
        CheckSize(type, payload);
        bool counted = kind == RemoteMessage.Request;
        if (counted)
        {
            await TakeCreditAsync(cancellationToken).ConfigureAwait(false);
        }

        uint requestId = Interlocked.Increment(ref _nextRequest) & ~OneWayBit;
        if (requestId == 0)
        {
            requestId = Interlocked.Increment(ref _nextRequest) & ~OneWayBit; // 0 is the connection's own errors
        }

        var pending = new Pending(counted, target, upTo: upTo);
        _pending[requestId] = pending;
        if (Volatile.Read(ref _dead) is { } died)
        {
            pending.Done.TrySetException(Gone(died));
        }

        var sent = Endpoint.SendMessageAsync((uint)kind, Frames.Encode(type, requestId, payload.Span), data, reply: true);
        _ = sent.ContinueWith(static (t, s) => ((RemoteConnection)s!).Fail(t.Exception!.InnerException!), this, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        try
        {
            return await pending.Done.Task.WaitAsync(_callTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException e)
        {
            Fail(e);
            CloseByForce(); // a receive into the caller's memory that started then ends now, not a call timeout later (below)
            throw new TubeNodeUnavailableException($"The node at {_address} did not answer {type} within {_callTimeout.TotalSeconds:0.#} s.", e);
        }
        finally
        {
            if (!data.IsEmpty)
            {
                await SettleAsync(sent).ConfigureAwait(false); // the window range is the caller's again only once UCX is done with it
            }

            if (!target.IsEmpty && pending.Abandon())
            {
                await SettleAsync(pending.Written.Task).ConfigureAwait(false); // the answer's bytes are still arriving: the target is the caller's again only once they stop
            }
        }
    }

    /// <summary>Waits until UCX is done with a window range; one that does not finish within the call timeout ends the connection (closing the endpoint by force completes it).</summary>
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

    /// <summary>
    /// The node stopped answering (a call timed out): the endpoint is closed by force now, so every
    /// send and receive UCX still has pending on it fails at once (a part's receive into the caller's
    /// memory among them, which a failed call waits for) instead of waiting on a peer that is gone.
    /// </summary>
    private void CloseByForce()
    {
        if (_endpoint is { } endpoint)
        {
            _ = endpoint.CloseAsync(force: true).ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    /// <summary>The answer to the node's Ping; a failure is the endpoint's (it fails the connection on its own).</summary>
    private void Pong()
    {
        try
        {
            _ = Endpoint.SendMessageAsync((uint)RemoteMessage.Pong, ReadOnlyMemory<byte>.Empty, reply: true)
                .ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
        catch (Exception e) when (e is ObjectDisposedException or UcxException or InvalidOperationException)
        {
            // Closed meanwhile.
        }
    }

    /// <summary>
    /// On the worker's progress thread: the node's challenge (once) or an answer. An answer gives its
    /// credit back and completes its call; a GetToHost part's bytes are taken only for a call that
    /// waits for exactly that many (rendezvous data received straight into its window range).
    /// </summary>
    public void OnMessage(UcxWorker worker, in UcxActiveMessage message)
    {
        if (message.Id == (uint)RemoteMessage.Challenge)
        {
            if (message.Header.Length <= 1024 && message.Length == 0)
            {
                _challenge.TrySetResult(message.Header.ToArray());
            }

            return;
        }

        if (message.Id == (uint)RemoteMessage.Ping)
        {
            // The node asks whether this client is still there (TubeNodeOptions.RemoteIdleTimeout): answered from the thread pool, never from the progress thread.
            ThreadPool.UnsafeQueueUserWorkItem(static c => c.Pong(), this, preferLocal: false);
            return;
        }

        if (message.Header.Length > MaxAnswerBytes)
        {
            Fail(new InvalidDataException($"An answer of {message.Header.Length} bytes from the node."));
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
            Fail(e);
            return;
        }

        if (requestId == 0 && type == FrameType.Error)
        {
            Fail(ToException(payload)); // the node ended the connection, and said why
            return;
        }

        if (!_pending.TryRemove(requestId, out var pending))
        {
            return; // nothing waits for it: dropped (with any data)
        }

        if (pending.Counted)
        {
            _credits.Release();
        }

        if ((requestId & OneWayBit) != 0)
        {
            if (type == FrameType.Error)
            {
                _oneWayFailed(ToException(payload), pending.Request); // here, before any later answer: a flush after it sees it (the client raises its event on the thread pool)
            }

            return;
        }

        if (type != FrameType.Ok)
        {
            pending.Done.TrySetException(ToException(payload));
            return;
        }

        if (pending.Target.IsEmpty)
        {
            pending.Done.TrySetResult(payload);
            return;
        }

        if (message.Length != pending.Target.Length && !(pending.UpTo && message.Length <= pending.Target.Length))
        {
            pending.Done.TrySetException(new TubeException(TubeError.Internal, $"The node sent {message.Length} bytes for a part of {pending.Target.Length}."));
            return;
        }

        if (pending.UpTo && !CarriesWhatItSays(payload, message.Length, pending.Target.Length))
        {
            pending.Done.TrySetException(new TubeException(TubeError.Internal, $"The node sent {message.Length} bytes for data it said is of another length."));
            return;
        }

        if (message.Length == 0)
        {
            pending.Done.TrySetResult(payload); // a GetWhole whose data did not fit: no bytes, nothing written
            return;
        }

        if (!pending.TryStartWriting())
        {
            return; // the caller gave up on it (its call timed out): its memory is not written any more
        }

        var target = pending.Target[..(int)message.Length];
        if (!message.IsRendezvous)
        {
            message.EagerData.CopyTo(target.Span);
            pending.Written.TrySetResult();
            pending.Done.TrySetResult(payload);
            return;
        }

        _ = worker.ReceiveData(message, target).ContinueWith(
            (t, s) =>
            {
                var (waiting, answer) = ((Pending, byte[]))s!;
                waiting.Written.TrySetResult();
                if (t.IsCompletedSuccessfully)
                {
                    waiting.Done.TrySetResult(answer);
                }
                else
                {
                    waiting.Done.TrySetException(Gone(t.Exception?.InnerException ?? new OperationCanceledException()));
                }
            }, (pending, payload), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>A GetWhole's answer: its data's length (when at most <paramref name="most"/>, and positive) is the bytes it brought; a longer length brought none.</summary>
    private static bool CarriesWhatItSays(byte[] payload, long received, int most)
    {
        long length;
        try
        {
            length = Payload.Read<GetOk>(payload).Length;
        }
        catch (InvalidDataException)
        {
            return false;
        }

        return length > most ? received == 0 : length > 0 && received == length;
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
        _challenge.TrySetException(cause);
        foreach (var pending in _pending.Values)
        {
            pending.Done.TrySetException(gone);
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

        _worker.Dispose(); // whatever UCX still had pending fails
        _context.Dispose();
    }
}
