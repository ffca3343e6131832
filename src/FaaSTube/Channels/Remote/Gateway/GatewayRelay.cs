using System.Net.Sockets;
using FaaSTube.Channels.Client;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Channels.Transport;

namespace FaaSTube.Channels.Remote.Gateway;

/// <summary>
/// In the network gateway: one remote client's session, relayed to the node over a local connection
/// of its own (the node's Unix socket). The window is a sealed memfd the gateway makes and hands the
/// node with <see cref="GatewayHello"/>: a remote client's part is received by UCX straight into it
/// and the node copies it to the GPU from the same pages; a part read back is written there by the
/// node and sent from there. Frames go through as they came (their trace context included), over the
/// connection's control ring when the node takes it (on the socket when it serves as many ring
/// sessions as it allows); one-way requests are confirmed with a <c>Sync</c>, so the client gets one
/// answer for each as it does from a node that serves it in process. When the node closes the connection (it stops, or ended the
/// session), the session ends; when the session ends, the connection closes and the node gives back
/// what it held.
/// </summary>
internal sealed class GatewayRelay : IRemoteBackend
{
    /// <summary>Each direction of the relay's control ring: 64 KiB, room for 16 of the largest remote requests (RemoteWire.MaxRequestBytes).</summary>
    internal const int RingBytes = 64 << 10;

    private static long _nextLocalId;
    private readonly GatewayHost _host;
    private readonly CancellationTokenSource _ended = new();
    private readonly SemaphoreSlim _slots;
    private ClientWindow? _window;
    private FramedConnection? _connection;
    private int _ending;

    public GatewayRelay(GatewayHost host)
    {
        _host = host;
        _slots = new SemaphoreSlim(host.Settings.MaxRequestsInFlight, host.Settings.MaxRequestsInFlight);
        Id = -Interlocked.Increment(ref _nextLocalId); // the gateway's own until the node names it (negative: never a node's id)
    }

    public long Id { get; private set; }

    public CancellationToken Ended => _ended.Token;

    public Task Completion { get; set; } = Task.CompletedTask;

    public Memory<byte> Window => _window is { } window ? window.Memory : Memory<byte>.Empty;

    public async Task<HelloOk> OpenAsync(Hello hello)
    {
        long bytes = hello.WindowBytes;
        if (bytes < 2 * 4096 || bytes > _host.Settings.MaxWindowBytes)
        {
            throw new TubeException(TubeError.BadRequest, $"A window of {bytes} bytes: it must be 8 KiB up to the node's limit of {_host.Settings.MaxWindowBytes}.");
        }

        Socket socket;
        try
        {
            _window = new ClientWindow((int)bytes);
            socket = await _host.ConnectNodeAsync(_ended.Token).ConfigureAwait(false); // only the node that started this gateway gets the key, the window and the bytes
        }
        catch (IOException e)
        {
            throw NodeGone(e.Message);
        }

        // Requests and answers cross the control ring (the node's socket path costs an epoll wake-up and a
        // thread-pool hop each way); answers complete the relayed request on the ring's receiving thread,
        // which only posts them to the UCX progress thread (RemoteSession.cs): no hop to the pool.
        _connection = new FramedConnection(socket, ControlRing.Create(RingBytes), _host.CallTimeout, closeSlab: _ => Abort(), oneWayFailed: (_, _) => { }, inlineAnswers: true);
        var ok = await _connection.GatewayHelloAsync(new GatewayHello(Frames.Version, _host.Key, hello.Workflow, hello.Function, bytes, 0), _window.Descriptor, _ended.Token).ConfigureAwait(false);
        Id = ok.SessionId;
        _ = _connection.Completion.ContinueWith(static (_, s) => ((GatewayRelay)s!).Abort(), this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return ok;
    }

    /// <summary>No node to relay to: the session ends (its client sees its connection close, as from a node that is gone); the reason goes to the log.</summary>
    private OperationCanceledException NodeGone(string reason)
    {
        _host.NodeUnreachable(Id, reason);
        Abort();
        return new OperationCanceledException(_ended.Token);
    }

    public async Task<ReadOnlyMemory<byte>> ExecuteAsync(FrameType type, byte[] payload)
    {
        var connection = _connection ?? throw new TubeException(TubeError.BadRequest, "A request before the session was open.");
        if (!Enum.IsDefined(type))
        {
            throw Requests.UnknownType(type); // refused here as the node would: no frame type the node does not know is relayed (the control ring carries none)
        }

        try
        {
            return await connection.RelayAsync(type, payload, _ended.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TubeNodeUnavailableException or IOException or ObjectDisposedException or SocketException)
        {
            Abort(); // the node is gone, stopping or not answering: the client learns it from the endpoint's close
            throw new OperationCanceledException(_ended.Token);
        }
    }

    public Task EnterAsync() => _slots.WaitAsync(_ended.Token);

    public void Exit() => _slots.Release();

    public void Abort()
    {
        try
        {
            _ended.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public async Task EndAsync(Func<Task> closeTransport)
    {
        if (Interlocked.Exchange(ref _ending, 1) != 0)
        {
            return;
        }

        Abort();
        await closeTransport().ConfigureAwait(false); // the endpoint's worker is gone: nothing of UCX touches the window any more
        for (int i = 0; i < _host.Settings.MaxRequestsInFlight; i++)
        {
            await _slots.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        }

        if (_connection is { } connection)
        {
            await connection.DisposeAsync().ConfigureAwait(false); // the node ends its session and gives back what it held
        }

        _window?.Dispose();
    }
}
