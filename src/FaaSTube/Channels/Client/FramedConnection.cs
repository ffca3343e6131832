using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net.Sockets;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Channels.Transport;
using Microsoft.Win32.SafeHandles;

namespace FaaSTube.Channels.Client;

/// <summary>
/// A client's connection over the node's Unix socket: requests go out as frames through the one
/// <see cref="FrameWriter"/>, answers are matched to their request ids by one read loop, and pushes
/// (CloseSlab) and one-way failures go to their handlers. Two-way requests take ids 1..2^31-1,
/// one-way requests ids with the top bit set: an <c>Error</c> with such an id is a one-way failure,
/// with nothing to remember per request. When the connection ends, every pending and later call fails.
/// </summary>
internal sealed class FramedConnection : INodeConnection
{
    private const uint OneWayBit = 0x8000_0000;
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<byte[]>> _pending = new();
    private readonly Socket _socket;
    private readonly PipeReader _reader;
    private readonly FrameWriter _writer;
    private readonly TimeSpan _callTimeout;
    private readonly Action<CloseSlab> _closeSlab;
    private readonly Action<TubeException> _oneWayFailed;
    private Task _readLoop = Task.CompletedTask;
    private uint _nextRequest;
    private Exception? _dead;

    public FramedConnection(Socket socket, TimeSpan callTimeout, Action<CloseSlab> closeSlab, Action<TubeException> oneWayFailed)
    {
        _socket = socket;
        var stream = new NetworkStream(socket, ownsSocket: true);
        _reader = PipeReader.Create(stream);
        _writer = new FrameWriter(PipeWriter.Create(stream), stream);
        _callTimeout = callTimeout;
        _closeSlab = closeSlab;
        _oneWayFailed = oneWayFailed;
    }

    /// <summary>Starts reading and sends Hello with the window's descriptor attached (SCM_RIGHTS), before any other frame.</summary>
    public async Task<HelloOk> HelloAsync(Hello hello, SafeFileHandle window, CancellationToken cancellationToken)
    {
        _readLoop = Task.Run(ReadLoopAsync, CancellationToken.None);
        var payload = Payload.Writer(hello);
        return Payload.Read<HelloOk>(await SendAndWaitAsync(FrameType.Hello, payload.Memory, window, cancellationToken).ConfigureAwait(false));
    }

    public async Task<TReply> CallAsync<TReply>(IRequest<TReply> request, CancellationToken cancellationToken)
        where TReply : IPayload<TReply>
    {
        var payload = new PayloadWriter();
        request.Write(payload);
        return Payload.Read<TReply>(await SendAndWaitAsync(request.Type, payload.Memory, null, cancellationToken).ConfigureAwait(false));
    }

    public async ValueTask PostAsync(IRequest<Empty> request)
    {
        if (Volatile.Read(ref _dead) is not null)
        {
            return; // the node is gone, and with it what this request would have changed
        }

        var payload = new PayloadWriter();
        request.Write(payload);
        uint id = (Interlocked.Increment(ref _nextRequest) & ~OneWayBit) | OneWayBit;
        try
        {
            await _writer.SendAsync(request.Type, id, payload.Memory, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or ObjectDisposedException or SocketException)
        {
            // The connection is ending; the read loop reports why to every later call.
        }
    }

    public async Task<byte[]> CallRawAsync(FrameType type, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        if (!OneWay.Is(type))
        {
            return await SendAndWaitAsync(type, payload, null, cancellationToken).ConfigureAwait(false);
        }

        uint id = (Interlocked.Increment(ref _nextRequest) & ~OneWayBit) | OneWayBit;
        await _writer.SendAsync(type, id, payload, cancellationToken).ConfigureAwait(false);
        await CallAsync(new Sync(), cancellationToken).ConfigureAwait(false); // its error, if any, was read before Sync's Ok
        return [];
    }

    private async Task<byte[]> SendAndWaitAsync(FrameType type, ReadOnlyMemory<byte> payload, SafeFileHandle? descriptor, CancellationToken cancellationToken)
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

        var pending = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[requestId] = pending;
        try
        {
            try
            {
                if (descriptor is not null)
                {
                    UnixRights.Send(_socket, Frames.Encode(type, requestId, payload.Span), descriptor);
                }
                else
                {
                    await _writer.SendAsync(type, requestId, payload, cancellationToken).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or ObjectDisposedException or SocketException)
            {
                // The node may have closed after telling why (access denied, bad version): let the
                // reader see that frame first, so the caller gets the reason, not a broken pipe.
                await Task.WhenAny(_readLoop, Task.Delay(_callTimeout, CancellationToken.None)).ConfigureAwait(false);
                Fail(e);
            }

            return await pending.Task.WaitAsync(_callTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException e)
        {
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

                if ((f.RequestId & OneWayBit) != 0)
                {
                    if (f.Type == FrameType.Error)
                    {
                        _oneWayFailed(ToException(f.Payload));
                    }

                    continue;
                }

                if (_pending.TryGetValue(f.RequestId, out var pending))
                {
                    if (f.Type == FrameType.Ok)
                    {
                        pending.TrySetResult(f.Payload);
                    }
                    else
                    {
                        pending.TrySetException(ToException(f.Payload));
                    }
                }
            }
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ObjectDisposedException or InvalidOperationException or SocketException)
        {
            error = e;
        }

        Fail(error ?? new IOException("The node closed the connection."));
    }

    private static TubeException ToException(byte[] payload)
    {
        var (error, message) = Payload.Read<Error>(payload);
        return new TubeException(error, message);
    }

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
    }
}
