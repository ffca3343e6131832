using System.IO.Pipelines;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Memory;
using Microsoft.Win32.SafeHandles;

namespace FaaSTube.Channels;

/// <summary>The first frame of a connection and the descriptors that came with it (the window).</summary>
internal sealed record HelloFrame(FrameType Type, uint RequestId, byte[] Payload, IReadOnlyList<SafeFileHandle> Descriptors);

/// <summary>
/// One client connection on the node. Its lifetime is the safety boundary against a client that
/// misbehaves or dies:
/// <list type="bullet">
/// <item>the handshake must finish within <see cref="TubeNodeOptions.HelloTimeout"/> and hand over the window as a descriptor;</item>
/// <item>at most <see cref="TubeNodeOptions.MaxRequestsInFlight"/> requests run at once: the next frame is not read before a slot is free;</item>
/// <item>when the connection ends (closed, broken, killed) every running request is cancelled and
/// awaited before anything it uses is given back: the window is unregistered and unmapped after the
/// last copy through it, leases and uses after the last request that could add one.</item>
/// </list>
/// The requests themselves are in <c>NodeSession.Requests.cs</c>.
/// </summary>
internal sealed partial class NodeSession
{
    private readonly TubeNode _node;
    private readonly PipeReader _reader;
    private readonly FrameWriter _writer;
    private readonly Func<CancellationToken, Task<HelloFrame?>> _receiveHello;
    private readonly SemaphoreSlim _slots;
    private readonly CancellationTokenSource _ended = new();
    private readonly uint _uid;
    private NodeWindow? _window;
    private string _workflow = "";
    private string _function = "";

    public NodeSession(TubeNode node, long id, PipeReader reader, PipeWriter writer, Func<CancellationToken, Task<HelloFrame?>> receiveHello, int pid, uint uid, bool inProcess, IDisposable? transport)
    {
        _node = node;
        Id = id;
        _reader = reader;
        _writer = new FrameWriter(writer, transport);
        _receiveHello = receiveHello;
        Pid = pid;
        _uid = uid;
        _inProcess = inProcess;
        _slots = new SemaphoreSlim(node.Options.MaxRequestsInFlight, node.Options.MaxRequestsInFlight);
    }

    public long Id { get; }

    public int Pid { get; }

    public uint Uid => _uid;

    /// <summary>Completes when the session has ended and everything it held was given back.</summary>
    public Task Completion { get; private set; } = Task.CompletedTask;

    public void Start(string? refusal, CancellationToken stop) => Completion = Task.Run(() => RunAsync(refusal, stop), CancellationToken.None);

    private async Task RunAsync(string? refusal, CancellationToken stop)
    {
        using var stopping = stop.Register(static s => ((CancellationTokenSource)s!).Cancel(), _ended);
        var ended = _ended.Token;
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
                await _slots.WaitAsync(ended).ConfigureAwait(false);
                (FrameType Type, uint RequestId, byte[] Payload)? frame;
                try
                {
                    frame = await Frames.ReadAsync(_reader, _node.Options.MaxFrameBytes, ended).ConfigureAwait(false);
                }
                catch
                {
                    _slots.Release();
                    throw;
                }

                if (frame is not { } f)
                {
                    _slots.Release();
                    return; // the client closed
                }

                _ = HandleAsync(f.Type, f.RequestId, f.Payload); // releases its slot when done
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
            await SendErrorQuietlyAsync(0, TubeError.Internal, _node.InternalError("the connection", Id, e)).ConfigureAwait(false);
        }
        finally
        {
            await EndAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Hello within the timeout, with exactly one descriptor: the window. False when the session must end.</summary>
    private async Task<bool> HandshakeAsync(CancellationToken ended)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ended);
        timeout.CancelAfter(_node.Options.HelloTimeout);
        HelloFrame? hello;
        try
        {
            hello = await _receiveHello(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ended.IsCancellationRequested)
        {
            await SendErrorQuietlyAsync(0, TubeError.BadRequest, $"No Hello within {_node.Options.HelloTimeout.TotalSeconds:0.###} s.").ConfigureAwait(false);
            return false;
        }

        if (hello is null)
        {
            return false;
        }

        try
        {
            if (hello.Type != FrameType.Hello)
            {
                throw new TubeException(TubeError.BadRequest, "The first frame must be Hello.");
            }

            var request = Payload.Read<Hello>(hello.Payload); // a wrong version first: VersionMismatch
            (_workflow, _function, long windowBytes) = (request.Workflow, request.Function, request.WindowBytes);
            if (_workflow.Length == 0)
            {
                throw new TubeException(TubeError.BadRequest, "A client must name its workflow.");
            }

            if (!_node.MayUseWorkflow(Pid, _uid, _workflow))
            {
                throw new TubeException(TubeError.AccessDenied, $"User {_uid} may not use workflow '{_workflow}'.");
            }

            if (windowBytes > _node.Options.MaxWindowBytes)
            {
                throw new TubeException(TubeError.BadRequest, $"A window of {windowBytes} bytes is over the node's limit of {_node.Options.MaxWindowBytes}.");
            }

            if (hello.Descriptors.Any(d => d.IsInvalid))
            {
                throw new TubeException(TubeError.OutOfMemory, "The node could not take the window's descriptor (it is out of descriptors, or more than one came); try again.");
            }

            if (hello.Descriptors.Count != 1)
            {
                throw new TubeException(TubeError.BadRequest, $"Hello must carry exactly one descriptor, the window; it carried {hello.Descriptors.Count}.");
            }

            _window = NodeWindow.Open(hello.Descriptors[0], windowBytes, _node.Gpus.Devices[0]);
            var ok = new HelloOk(Frames.Version, Id, _node.Gpus.Devices.Count, _node.Gpus.Backend);
            await SendAsync(FrameType.Ok, hello.RequestId, Payload.Writer(ok).Memory).ConfigureAwait(false);
            return true;
        }
        catch (Exception e)
        {
            foreach (var descriptor in hello.Descriptors)
            {
                descriptor.Dispose(); // the window's too, unless it was adopted (then the window owns it)
            }

            _window?.Dispose();
            _window = null;
            var (error, message) = e switch
            {
                TubeException t => (t.Error, t.Reason),
                InvalidDataException or ArgumentException or IOException => (TubeError.BadRequest, e.Message),
                _ => (TubeError.Internal, _node.InternalError("Hello", Id, e)), // e.g. the driver refused to register the window
            };
            await SendErrorQuietlyAsync(hello.RequestId, error, message).ConfigureAwait(false);
            return false;
        }
    }

    /// <summary>
    /// The connection is over: cancel what runs and close the connection (a reply blocked on a client
    /// that stopped reading ends with it), wait until every request has let go (each holds a slot),
    /// then give back what the session held.
    /// </summary>
    private async Task EndAsync()
    {
        await _ended.CancelAsync().ConfigureAwait(false);
        await FrameWriter.Quietly(_reader.CompleteAsync()).ConfigureAwait(false);
        await _writer.CompleteAsync().ConfigureAwait(false);
        for (int i = 0; i < _node.Options.MaxRequestsInFlight; i++)
        {
            await _slots.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        }

        try
        {
            _node.EndSession(this);
        }
        catch (Exception e)
        {
            _node.InternalError("the session's cleanup", Id, e);
        }
    }

    /// <summary>Ends the connection from the node's side; <see cref="Completion"/> completes once it is cleaned up.</summary>
    public void Abort()
    {
        _reader.CancelPendingRead();
        _ended.Cancel(); // also mid-handshake, or while it waits for a request slot
    }

    /// <summary>True while every request slot is taken: the next frame (perhaps a SlabClosed) waits unread.</summary>
    public bool IsSaturated => _slots.CurrentCount == 0;

    /// <summary>Whether this client still has slab (<paramref name="device"/>, <paramref name="slab"/>, <paramref name="generation"/>) open.</summary>
    public bool HasOpened(int device, int slab, int generation)
    {
        lock (_sync)
        {
            return _opened.Contains((device, slab, generation));
        }
    }

    /// <summary>Gives back every use the session holds and its window (called once every request has ended).</summary>
    public void ReleaseAll()
    {
        List<BlockUse> uses;
        lock (_sync)
        {
            uses = _held.Values.SelectMany(s => s.Select(h => h.Use)).ToList();
            _held.Clear();
            _opened.Clear();
        }

        uses.ForEach(u => u.Dispose());
        _window?.Dispose();
        _window = null;
    }

    /// <summary>Pushes "close this slab" (request id 0) to the client; it answers with SlabClosed once its buffers there are gone.</summary>
    public void TellToClose(int device, int slab, int generation) =>
        _ = SendAsync(FrameType.CloseSlab, 0, Payload.Writer(new CloseSlab(device, slab, generation)).Memory).AsTask()
            .ContinueWith(t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted);

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
