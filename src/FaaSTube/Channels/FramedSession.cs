using System.IO.Pipelines;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using Microsoft.Win32.SafeHandles;

namespace FaaSTube.Channels;

/// <summary>The first frame of a connection and the descriptors that came with it (the window).</summary>
internal sealed record HelloFrame(FrameType Type, uint RequestId, byte[] Payload, IReadOnlyList<SafeFileHandle> Descriptors);

/// <summary>
/// A session served over frames (a Unix socket): the handshake within <see cref="TubeNodeOptions.HelloTimeout"/>,
/// then one frame read per free request slot, each request executed by the <see cref="NodeSession"/>
/// and answered with <c>Ok</c> or <c>Error</c> (one-way requests only with <c>Error</c>), pushes written
/// through the one <see cref="FrameWriter"/>, and the session's end when the connection ends.
/// </summary>
internal sealed class FramedSession
{
    private readonly NodeSession _session;
    private readonly PipeReader _reader;
    private readonly FrameWriter _writer;
    private readonly Func<CancellationToken, Task<HelloFrame?>> _receiveHello;

    public FramedSession(NodeSession session, PipeReader reader, PipeWriter writer, Func<CancellationToken, Task<HelloFrame?>> receiveHello, IDisposable? transport)
    {
        _session = session;
        _reader = reader;
        _writer = new FrameWriter(writer, transport);
        _receiveHello = receiveHello;
        session.Push = close => _ = SendAsync(FrameType.CloseSlab, 0, Payload.Writer(close).Memory).AsTask()
            .ContinueWith(t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted);
    }

    public void Start(string? refusal, CancellationToken stop) =>
        _session.Completion = Task.Run(() => RunAsync(refusal, stop), CancellationToken.None);

    private async Task RunAsync(string? refusal, CancellationToken stop)
    {
        using var stopping = stop.Register(static s => ((NodeSession)s!).Abort(), _session);
        var ended = _session.Ended;
        var options = _session.Node.Options;
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
                await _session.EnterAsync().ConfigureAwait(false);
                (FrameType Type, uint RequestId, byte[] Payload)? frame;
                try
                {
                    frame = await Frames.ReadAsync(_reader, options.MaxFrameBytes, ended).ConfigureAwait(false);
                }
                catch
                {
                    _session.Exit();
                    throw;
                }

                if (frame is not { } f)
                {
                    _session.Exit();
                    return; // the client closed
                }

                _ = HandleAsync(f.Type, f.RequestId, f.Payload); // gives its slot back when done
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
        }
    }

    private async Task CloseAsync()
    {
        await FrameWriter.Quietly(_reader.CompleteAsync()).ConfigureAwait(false);
        await _writer.CompleteAsync().ConfigureAwait(false);
    }

    /// <summary>Hello within the timeout, with exactly one descriptor: the window. False when the session must end.</summary>
    private async Task<bool> HandshakeAsync(CancellationToken ended)
    {
        var timeoutAfter = _session.Node.Options.HelloTimeout;
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

        HelloOk ok;
        try
        {
            var request = hello.Type == FrameType.Hello
                ? Payload.Read<Hello>(hello.Payload) // a wrong version first: VersionMismatch
                : throw new TubeException(TubeError.BadRequest, "The first frame must be Hello.");
            ok = _session.Open(request, hello.Descriptors);
        }
        catch (Exception e)
        {
            foreach (var descriptor in hello.Descriptors)
            {
                descriptor.Dispose(); // Open closes them itself; a Hello it never saw has them still open
            }

            var refused = e as TubeException ?? new TubeException(TubeError.BadRequest, e.Message);
            await SendErrorQuietlyAsync(hello.RequestId, refused.Error, refused.Reason).ConfigureAwait(false);
            return false;
        }

        await _writer.SendAsync(FrameType.Ok, hello.RequestId, Payload.Writer(ok).Memory, CancellationToken.None).ConfigureAwait(false);
        return true;
    }

    /// <summary>One request: decoded, executed, answered (a one-way request only when it failed); its slot is given back at the end.</summary>
    private async Task HandleAsync(FrameType type, uint requestId, byte[] payload)
    {
        try
        {
            var (reply, _) = await _session.ExecuteAsync(type, payload).ConfigureAwait(false);
            if (OneWay.Is(type))
            {
                return; // applied; only an error is answered
            }

            var writer = new PayloadWriter();
            reply.Write(writer);
            await SendAsync(FrameType.Ok, requestId, writer.Memory).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_session.Ended.IsCancellationRequested)
        {
            // The session ended under the request: cancelled, nobody is there to answer.
        }
        catch (TubeException e)
        {
            await SendErrorQuietlyAsync(requestId, e.Error, e.Reason).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ObjectDisposedException or IOException)
        {
            // The connection is closed (the session ended under the request): nobody is there to answer.
        }
        finally
        {
            _session.Exit();
        }
    }

    private Task SendErrorAsync(uint requestId, TubeError error, string message) =>
        SendAsync(FrameType.Error, requestId, Payload.Writer(new Error(error, message.Length > 2000 ? message[..2000] : message)).Memory).AsTask();

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
