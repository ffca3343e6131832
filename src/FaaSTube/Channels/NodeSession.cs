using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Memory;
using Microsoft.Win32.SafeHandles;

namespace FaaSTube.Channels;

/// <summary>
/// One client on the node, whatever carries its requests (a socket's frames, the control ring, or
/// direct calls from a client in the node's process). Its lifetime is the safety boundary against a
/// client that misbehaves or dies:
/// <list type="bullet">
/// <item><see cref="Open"/> checks the Hello and adopts the window (a descriptor, never a name); <see cref="OpenGateway"/> the same for a remote client the network gateway relays;</item>
/// <item>at most <see cref="TubeNodeOptions.MaxRequestsInFlight"/> requests run at once: each holds a
/// slot (<see cref="EnterAsync"/>), and a transport reads at most one request ahead of a free slot;
/// Gets that wait for a publish give their slot back meanwhile and hold one of as many wait slots;</item>
/// <item>when the connection ends (closed, broken, killed) every running request is cancelled and
/// awaited before anything it uses is given back (<see cref="EndAsync"/>): the window is unregistered
/// and unmapped after the last copy through it, leases and uses after the last request that could add one.</item>
/// </list>
/// The requests themselves are in <c>NodeSession.Requests.cs</c>; the socket transport in <c>FramedSession.cs</c>.
/// </summary>
internal sealed partial class NodeSession
{
    private readonly TubeNode _node;
    private readonly SemaphoreSlim _slots;
    private readonly SemaphoreSlim _waits;
    private readonly CancellationTokenSource _ended = new();
    private uint _uid;
    private NodeWindow? _window;
    private string _workflow = "";
    private string _function = "";
    private int _ending;

    public NodeSession(TubeNode node, long id, int pid, uint uid, bool inProcess)
    {
        _node = node;
        Id = id;
        Pid = pid;
        _uid = uid;
        _inProcess = inProcess;
        _slots = new SemaphoreSlim(node.Settings.MaxRequestsInFlight, node.Settings.MaxRequestsInFlight);
        _waits = new SemaphoreSlim(node.Settings.MaxRequestsInFlight, node.Settings.MaxRequestsInFlight);
    }

    public long Id { get; }

    /// <summary>The session as a holder of pool leases and an importer of slabs (its <see cref="Id"/>).</summary>
    public LeaseHolder Holder => new(Id);

    public int Pid { get; }

    /// <summary>The peer's uid (SO_PEERCRED); <see cref="Remote.RemoteSession.RemoteUid"/> for a remote client's session, a relayed one's too once its GatewayHello is accepted.</summary>
    public uint Uid => Volatile.Read(ref _uid);

    public TubeNode Node => _node;

    /// <summary>The workflow its Hello named ("" before the Hello was accepted).</summary>
    public string Workflow => _workflow;

    /// <summary>The function its Hello named.</summary>
    public string Function => _function;

    /// <summary>Its window's bytes (0 before the Hello was accepted, or after the session ended).</summary>
    public long WindowBytes => _window?.Length ?? 0;

    /// <summary>Leases and unfinished Puts it holds now.</summary>
    public int HeldCount
    {
        get
        {
            lock (_sync)
            {
                return _held.Values.Sum(s => s.Count);
            }
        }
    }

    /// <summary>Cancelled when the session ends (its transport closed, or the node aborted it).</summary>
    public CancellationToken Ended => _ended.Token;

    /// <summary>How the node's pushes reach the client (the socket transport sets it; in-process clients open no slabs and get none).</summary>
    public Action<CloseSlab>? Push { get; set; }

    /// <summary>Completes when the session has ended and everything it held was given back.</summary>
    public Task Completion { get; set; } = Task.CompletedTask;

    /// <summary>
    /// The handshake's checks: version (when the Hello was read), workflow allowed for this user,
    /// window size, exactly one descriptor (the window), which is adopted and registered. The
    /// descriptors are the session's from here on: on failure every one is closed.
    /// </summary>
    /// <exception cref="TubeException">Refused, with the code and message the client gets.</exception>
    public HelloOk Open(Hello hello, IReadOnlyList<SafeFileHandle> descriptors) =>
        OpenWindow("Hello", hello.Workflow, hello.Function, hello.WindowBytes, minWindowBytes: 0, descriptors, admit: () =>
        {
            if (!_node.MayUseWorkflow(Pid, _uid, _workflow))
            {
                throw new TubeException(TubeError.AccessDenied, $"User {_uid} may not use workflow '{_workflow}'.");
            }
        });

    /// <summary>
    /// A remote client's handshake relayed by the network gateway, once the transport has checked the
    /// gateway's key (<c>FramedSession.cs</c>): the same checks and window as <see cref="Open"/> (a
    /// window of at least 8 KiB, like <see cref="OpenRemote"/>'s), but no workflow check for the user (the
    /// gateway proved the client knows its workflow's secret): the session is remote instead, from
    /// here on: it counts under <see cref="Remote.RemoteSession.RemoteUid"/>, within the node's own
    /// limits for remote clients (<see cref="TubeNodeOptions.MaxRemoteSessions"/>,
    /// <see cref="TubeNodeOptions.MaxSessionsPerUser"/>, <see cref="TubeNodeOptions.MaxRemoteSessionsPerWorkflow"/>:
    /// whatever the gateway lets through), and reaches host data only.
    /// </summary>
    /// <exception cref="TubeException">Refused, with the code and message the client gets.</exception>
    public HelloOk OpenGateway(GatewayHello hello, IReadOnlyList<SafeFileHandle> descriptors) =>
        OpenWindow("GatewayHello", hello.Workflow, hello.Function, hello.WindowBytes, MinRemoteWindowBytes, descriptors, admit: BecomeRemote);

    /// <summary>The smallest window of a remote client: two pages.</summary>
    private const long MinRemoteWindowBytes = 2 * 4096;

    /// <summary>
    /// A relayed session becomes remote, if the node has room for another remote client and its
    /// workflow for another remote session (counted by the node: the gateway's own limits are not trusted).
    /// </summary>
    private void BecomeRemote()
    {
        var settings = _node.Settings;
        if (settings.RemoteSecrets is not { } secrets || !secrets.ContainsKey(_workflow))
        {
            // The gateway proved the client knows the workflow's secret; a workflow with none is not open to remote clients, whatever the gateway says.
            throw new TubeException(TubeError.AccessDenied, $"Workflow '{_workflow}' is not open to remote clients.");
        }

        int limit = Math.Min(settings.MaxRemoteSessions, settings.MaxSessionsPerUser);
        lock (_node.RemoteAdmission) // counted and admitted in one step: concurrent GatewayHellos cannot all pass the same count
        {
            var remote = _node.Sessions.Where(s => s != this && s.Uid == Remote.RemoteSession.RemoteUid).ToList();
            if (remote.Count >= limit)
            {
                throw new TubeException(TubeError.AccessDenied, $"The node has {limit} remote clients connected, the most it allows.");
            }

            if (remote.Count(s => s.Workflow == _workflow) >= settings.MaxRemoteSessionsPerWorkflow)
            {
                throw new TubeException(TubeError.AccessDenied, $"Workflow '{_workflow}' has {settings.MaxRemoteSessionsPerWorkflow} remote clients connected, the most the node allows one workflow.");
            }

            Volatile.Write(ref _uid, Remote.RemoteSession.RemoteUid);
            IsRemote = true;
        }
    }

    /// <summary>
    /// <see cref="Open"/> and <see cref="OpenGateway"/>: the names, <paramref name="admit"/> (who may
    /// use the workflow), the window's size, exactly one descriptor, adopted and registered. On
    /// failure every descriptor is closed and the error is the client's.
    /// </summary>
    private HelloOk OpenWindow(string frame, string workflow, string function, long windowBytes, long minWindowBytes, IReadOnlyList<SafeFileHandle> descriptors, Action admit)
    {
        try
        {
            (_workflow, _function) = (workflow, function);
            if (_workflow.Length == 0)
            {
                throw new TubeException(TubeError.BadRequest, "A client must name its workflow.");
            }

            admit();
            if (windowBytes > _node.Settings.MaxWindowBytes || windowBytes < minWindowBytes)
            {
                throw new TubeException(TubeError.BadRequest, minWindowBytes > 0
                    ? $"A window of {windowBytes} bytes: it must be {minWindowBytes / 1024} KiB up to the node's limit of {_node.Settings.MaxWindowBytes}."
                    : $"A window of {windowBytes} bytes is over the node's limit of {_node.Settings.MaxWindowBytes}.");
            }

            if (descriptors.Any(d => d.IsInvalid))
            {
                throw new TubeException(TubeError.OutOfMemory, $"The node could not take the {frame}'s descriptors (it is out of descriptors, or more came than it keeps); try again.");
            }

            if (descriptors.Count != 1)
            {
                throw new TubeException(TubeError.BadRequest, $"{frame} must carry exactly one descriptor, the window; it carried {descriptors.Count}.");
            }

            _window = NodeWindow.Open(descriptors[0], windowBytes, _node.Gpus.Devices[0]);
            return new HelloOk(Frames.Version, Id, _node.Gpus.Devices.Count, _node.Gpus.Backend, Ring: false);
        }
        catch (Exception e)
        {
            foreach (var descriptor in descriptors)
            {
                descriptor.Dispose(); // the window's too, unless it was adopted (then the window owns it)
            }

            _window?.Dispose();
            _window = null;
            throw e switch
            {
                TubeException t => t,
                InvalidDataException or ArgumentException or IOException => new TubeException(TubeError.BadRequest, e.Message),
                _ => new TubeException(TubeError.Internal, _node.InternalError(frame, Id, e)), // e.g. the driver refused to register the window
            };
        }
    }

    /// <summary>
    /// A remote client's handshake, once its transport has proved the client knows its workflow's
    /// secret (<c>Channels/Remote/RemoteSession.cs</c>): the same checks of the Hello, but the window
    /// is memory the node allocates and registers (the transport fills and drains it over the network).
    /// </summary>
    /// <exception cref="TubeException">Refused, with the code and message the client gets.</exception>
    public HelloOk OpenRemote(Hello hello)
    {
        IsRemote = true;
        (_workflow, _function) = (hello.Workflow, hello.Function);
        if (_workflow.Length == 0)
        {
            throw new TubeException(TubeError.BadRequest, "A client must name its workflow.");
        }

        if (hello.WindowBytes < 2 * 4096 || hello.WindowBytes > _node.Settings.MaxWindowBytes)
        {
            throw new TubeException(TubeError.BadRequest, $"A window of {hello.WindowBytes} bytes: it must be 8 KiB up to the node's limit of {_node.Settings.MaxWindowBytes}.");
        }

        try
        {
            _window = NodeWindow.Allocate((int)hello.WindowBytes, _node.Gpus.Devices[0]);
        }
        catch (Exception e)
        {
            throw new TubeException(TubeError.Internal, _node.InternalError("Hello", Id, e));
        }

        return new HelloOk(Frames.Version, Id, _node.Gpus.Devices.Count, _node.Gpus.Backend, Ring: false);
    }

    /// <summary>A client on another machine: it reaches host data only (no mappings, no allocations to write in place).</summary>
    public bool IsRemote { get; private set; }

    /// <summary>The window (remote transports move bytes into and out of it); null before the handshake and after the end.</summary>
    internal NodeWindow? CurrentWindow => _window;

    /// <summary>Takes a request slot (waits while all are taken); throws <see cref="OperationCanceledException"/> once the session ended.</summary>
    public Task EnterAsync() => _slots.WaitAsync(_ended.Token);

    /// <summary>Takes a request slot on a thread that may block (the control ring's); <see cref="OperationCanceledException"/> once the session ended.</summary>
    public void Enter() => _slots.Wait(_ended.Token);

    /// <summary>Gives a request slot back.</summary>
    public void Exit() => _slots.Release();

    /// <summary>
    /// The connection is over: cancel what runs, close the transport (a reply blocked on a client
    /// that stopped reading ends with it), wait until every request has let go (each holds a slot),
    /// then give back what the session held. Once; later calls return at once.
    /// </summary>
    public async Task EndAsync(Func<Task> closeTransport)
    {
        if (Interlocked.Exchange(ref _ending, 1) != 0)
        {
            return;
        }

        await _ended.CancelAsync().ConfigureAwait(false);
        await closeTransport().ConfigureAwait(false);
        for (int i = 0; i < _node.Settings.MaxRequestsInFlight; i++)
        {
            await _waits.WaitAsync(CancellationToken.None).ConfigureAwait(false); // Gets waiting for a publish first: each takes a request slot again as it ends
        }

        for (int i = 0; i < _node.Settings.MaxRequestsInFlight; i++)
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

    /// <summary>
    /// A graceful end: takes every request slot (so no new request starts, and each running one has
    /// finished and answered), until <paramref name="cancellationToken"/> fires; then ends the session
    /// (<see cref="Abort"/>) and gives the slots back for <see cref="EndAsync"/>. Completes once it is cleaned up.
    /// </summary>
    public async Task DrainAsync(CancellationToken cancellationToken)
    {
        int taken = 0;
        using var patience = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _ended.Token); // a session that ends on its own needs its slots back for EndAsync
        try
        {
            for (; taken < _node.Settings.MaxRequestsInFlight; taken++)
            {
                await _slots.WaitAsync(patience.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            // out of patience: what still runs is cancelled with the session
        }
        catch (ObjectDisposedException)
        {
        }

        Abort();
        if (taken > 0)
        {
            _slots.Release(taken);
        }

        await Completion.ConfigureAwait(false);
    }

    /// <summary>Ends the connection from the node's side; <see cref="Completion"/> completes once it is cleaned up.</summary>
    public void Abort() => _ended.Cancel(); // also mid-handshake, or while it waits for a request slot

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
            uses.AddRange(TakeRangeUses());
            _held.Clear();
            _opened.Clear();
        }

        uses.ForEach(u => u.Dispose());
        _window?.Dispose();
        _window = null;
    }

    /// <summary>Tells the client to close a retiring slab; it answers with SlabClosed once its buffers there are gone.</summary>
    public void TellToClose(int device, int slab, int generation) => Push?.Invoke(new CloseSlab(device, slab, generation));
}
