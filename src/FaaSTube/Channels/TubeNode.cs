using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.IO.Pipelines;
using System.Net.Sockets;
using FaaSTube.Channels.Peers;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Channels.Transport;
using FaaSTube.Devices;
using FaaSTube.Diagnostics;
using FaaSTube.Hosting;
using FaaSTube.Memory;
using FaaSTube.Native;
using FaaSTube.Transfers;
using FaaSTube.Transfers.Routing;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace FaaSTube.Channels;

/// <summary>
/// The node: one per machine, in the function runtime's process or in a small host program. It owns
/// the GPUs, an elastic pool and a transfer engine per GPU, the directory of data ids, and the client
/// sessions; clients connect over a Unix socket (owner-only, peer credentials checked) or in process.
/// Control messages go over the connection; data moves by DMA, IPC mapping or shared memory.
/// </summary>
public sealed partial class TubeNode : IAsyncDisposable
{
    private readonly ConcurrentDictionary<long, NodeSession> _sessions = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly ILogger _logger;
    private readonly FaaSTubeServices _services;
    private ITimer? _sweeper;
    private readonly long _start;
    private Socket? _listener;
    private Task _acceptLoop = Task.CompletedTask;
    private Remote.RemoteListener? _network;
    private Remote.Gateway.GatewaySupervisor? _gateway;
    private readonly TubeNodeOptions _options;
    private TaskCompletionSource _sessionEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _nextSession;
    private int _peakRunning;
    private readonly long[] _pathBytes = new long[2 * ((int)Enum.GetValues<TubePath>().Max() + 1)]; // (TubePath, transmit) since start, for the admin status
    private int _disposed;

    /// <summary>
    /// Builds the node's parts in memory around GPUs already open: no file, socket, timer or thread
    /// is touched here (<see cref="StartCoreAsync"/> does that, after).
    /// </summary>
    private TubeNode(TubeNodeOptions settings, GpuSystem gpus, PathRouter router, NodeDevice[] devices, FaaSTubeServices services)
    {
        _options = settings;
        _services = services;
        Metrics = ChannelMetrics.For(services.MeterFactory);
        _logger = services.Logger<TubeNode>();
        Gpus = gpus;
        Router = router; // the engines' host lanes report to it (NodeDevice), so harvesting never borrows a busy lane
        Devices = devices;
        Copier = new MultiPathCopier(Gpus, Router, relays: Devices.Select(d => new PoolRelayBuffers(d.Pool)).ToArray(), hostLanes: Devices.Select(d => d.Engine).ToArray());
        foreach (var device in Devices)
        {
            device.Pool.SlabRetiring += (_, e) => OnSlabRetiring(device.Device.Ordinal, e);
        }

        Directory = new DataDirectory(services.TimeProvider);
        Names = new Names.NameDirectory(settings.AuthorizeNamespace, settings.MaxNamesPerScope, settings.LoadTimeout, services.TimeProvider);
        _start = services.TimeProvider.GetTimestamp();
    }

    /// <summary>
    /// The settings the node started with: a copy on each read. The node took its own copy at start
    /// and runs with it to the end; changing this object, or the one given to <see cref="StartAsync(TubeNodeOptions?, CancellationToken)"/>, has no effect.
    /// </summary>
    public TubeNodeOptions Options => _options.Snapshot();

    /// <summary>The node's own copy of its settings (read inside the library; never handed out).</summary>
    internal TubeNodeOptions Settings => _options;

    /// <summary>The shared services the node and its parts run with (logging, metrics, clock).</summary>
    internal FaaSTubeServices Services => _services;

    /// <summary>The GPUs the node owns.</summary>
    public GpuSystem Gpus { get; }

    /// <summary>The socket clients connect to (null: in-process only).</summary>
    public string? SocketPath => _listener is null ? null : _options.SocketPath;

    /// <summary>Where remote clients connect over UCX (<see cref="TubeNodeOptions.NetworkListen"/>, the port chosen); null: no network listener.</summary>
    public System.Net.IPEndPoint? NetworkEndPoint => _network?.EndPoint ?? _gateway?.EndPoint;

    /// <summary>Taken to count remote sessions and admit one more in the same step (<c>NodeSession.BecomeRemote</c>).</summary>
    internal Lock RemoteAdmission { get; } = new();

    /// <summary>The network gateway's supervisor (<see cref="NetworkIsolation.Process"/>); null otherwise.</summary>
    internal Remote.Gateway.GatewaySupervisor? Gateway => _gateway;

    /// <summary>Clients connected now.</summary>
    public int SessionCount => _sessions.Count;

    /// <summary>
    /// The key of the network gateway this node spawned: a local connection whose first frame is
    /// <see cref="GatewayHello"/> with this key is served as a remote client's session
    /// (src/FaaSTube/Channels/FramedSession.cs); null: no gateway, and every GatewayHello is refused.
    /// Exactly <see cref="GatewayHello.KeyBytes"/> bytes; the node keeps its own copy.
    /// </summary>
    /// <exception cref="ArgumentException">A key of another length.</exception>
    internal byte[]? GatewayKey
    {
        get => Volatile.Read(ref field);
        set => Volatile.Write(ref field, value is null ? null
            : value.Length == GatewayHello.KeyBytes ? value.ToArray()
            : throw new ArgumentException($"A gateway key is {GatewayHello.KeyBytes} bytes; this one is {value.Length}.", nameof(value)));
    }

    internal NodeDevice[] Devices { get; }

    /// <summary>The node's view of the links between its GPUs (reservations of its copies).</summary>
    internal PathRouter Router { get; }

    internal MultiPathCopier Copier { get; }

    /// <summary>The node's instruments, on the meter of the composition root's IMeterFactory.</summary>
    internal ChannelMetrics Metrics { get; }

    internal TimeSpan Now => _services.TimeProvider.GetElapsedTime(_start);

    /// <summary>The pool of a GPU (for statistics).</summary>
    /// <param name="device">The GPU's ordinal.</param>
    internal GpuMemoryPool PoolOf(int device) => Devices[device].Pool;

    /// <summary>
    /// Starts a node: opens the GPUs, and listens on <see cref="TubeNodeOptions.SocketPath"/> (owner-only).
    /// A socket file left by a dead node is removed; one that a live node answers on is not.
    /// </summary>
    /// <param name="options">Settings (the node takes a copy: later changes have no effect); null for the defaults.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <exception cref="InvalidOperationException">Another node is live on the socket.</exception>
    /// <exception cref="ArgumentException">An option is out of range (its name is the exception's parameter name).</exception>
    public static Task<TubeNode> StartAsync(TubeNodeOptions? options = null, CancellationToken cancellationToken = default) =>
        StartAsync(options, FaaSTubeServices.Default, cancellationToken);

    /// <summary>
    /// Starts a node as <see cref="StartAsync(TubeNodeOptions?, CancellationToken)"/> does, with the services every part of
    /// it uses (the node, its GPUs, pools and transfer engines): what <c>AddFaaSTubeNode</c> passes from dependency injection.
    /// </summary>
    /// <param name="options">Settings (the node takes a copy); null for the defaults.</param>
    /// <param name="loggerFactory">Where the node and its parts log; null: nowhere.</param>
    /// <param name="timeProvider">The clock of TTLs, deadlines, pool windows and timers; null: the system's.</param>
    /// <param name="meterFactory">Where the node's instruments are created; null: the library's own meter.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    public static Task<TubeNode> StartAsync(TubeNodeOptions? options, ILoggerFactory? loggerFactory, TimeProvider? timeProvider = null, IMeterFactory? meterFactory = null, CancellationToken cancellationToken = default) =>
        StartAsync(options, FaaSTubeServices.From(loggerFactory, meterFactory, timeProvider), cancellationToken);

    internal static async Task<TubeNode> StartAsync(TubeNodeOptions? options, FaaSTubeServices services, CancellationToken cancellationToken)
    {
        var settings = (options ?? new TubeNodeOptions()).Snapshot();
        settings.ValidateAll();
        cancellationToken.ThrowIfCancellationRequested();
        var gpus = GpuSystem.Open(settings.Gpus, services);
        var router = new PathRouter(gpus.Topology);
        var devices = new List<NodeDevice>();
        TubeNode node;
        try
        {
            foreach (var device in gpus.Devices)
            {
                devices.Add(new NodeDevice(device, settings.Pool, settings.Transfers, router, services));
                devices[^1].Engine.PinStaging(); // as the node starts, not in a client's first Put
            }

            node = new TubeNode(settings, gpus, router, devices.ToArray(), services);
        }
        catch
        {
            foreach (var device in devices)
            {
                await device.Engine.DisposeAsync().ConfigureAwait(false); // nothing ran on it yet: its lanes stop at once
                await device.Pool.DisposeAsync().ConfigureAwait(false);
            }

            gpus.Dispose();
            throw;
        }

        try
        {
            await node.StartCoreAsync(cancellationToken).ConfigureAwait(false);
            return node;
        }
        catch
        {
            await node.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>What starting does beyond building: start the TTL sweep, listen (opening a simulated GpuSystem already swept memory that dead processes left).</summary>
    private async Task StartCoreAsync(CancellationToken cancellationToken)
    {
        if (_options.SweepInterval is { } interval)
        {
            _sweeper = _services.TimeProvider.CreateTimer(_ => SweepQuietly(), null, interval, interval);
        }

        if (_options.SocketPath is { } path)
        {
            await ListenAsync(path, cancellationToken).ConfigureAwait(false);
        }

        if (_options.NetworkListen is { } network)
        {
            if (_options.NetworkIsolation == NetworkIsolation.Process)
            {
                GatewayKey = System.Security.Cryptography.RandomNumberGenerator.GetBytes(Protocol.Messages.GatewayHello.KeyBytes);
                _gateway = await Remote.Gateway.GatewaySupervisor.StartAsync(this, network, GatewayKey!, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                _network = await Remote.RemoteListener.StartAsync(new Remote.InProcessRemoteHost(this), network, _stop.Token).WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        if (_options.PeerNodes is { Count: > 0 })
        {
            PeerFetches = new PeerFetcher(this, _gateway is { } gateway ? new Remote.Gateway.GatewayPeerTransport(gateway, this) : new InProcessPeerTransport(this));
        }
    }

    /// <summary>Fetches from the peer nodes (<see cref="TubeNodeOptions.PeerNodes"/>); null: no peers.</summary>
    internal PeerFetcher? PeerFetches { get; private set; }

    private async Task ListenAsync(string path, CancellationToken cancellationToken)
    {
        if (File.Exists(path))
        {
            using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await probe.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
                throw new InvalidOperationException($"Another FaaSTube node is live on {path}.");
            }
            catch (SocketException)
            {
                File.Delete(path); // stale: its node is gone
                LogStaleSocket(_logger, path);
            }
        }

        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, _options.SocketAccess);
        }

        listener.Listen(128);
        _listener = listener;
        _acceptLoop = Task.Run(AcceptLoopAsync);
        LogListening(_logger, path, Gpus.Backend, Gpus.Devices.Count);
    }

    /// <summary>
    /// Accepts until the node stops. Running out of descriptors or memory (EMFILE, ENFILE, ENOBUFS)
    /// does not end it: it logs, waits until a session ends (or a short while), and accepts again.
    /// </summary>
    private async Task AcceptLoopAsync()
    {
        bool starved = false;
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                var sessionEnded = _sessionEnded.Task;
                try
                {
                    socket = await _listener!.AcceptAsync(_stop.Token).ConfigureAwait(false);
                }
                catch (SocketException e) when (e.SocketErrorCode is SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable or SocketError.SystemNotReady)
                {
                    if (!starved)
                    {
                        LogAcceptStarved(_logger, e.SocketErrorCode, _sessions.Count);
                        starved = true;
                    }

                    await Task.WhenAny(sessionEnded, Task.Delay(TimeSpan.FromMilliseconds(100), _stop.Token)).ConfigureAwait(false);
                    continue;
                }
                catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionAborted or SocketError.ConnectionReset or SocketError.Interrupted)
                {
                    continue; // that client gave up before it was accepted
                }
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return; // the node is stopping
            }
            catch (SocketException e)
            {
                InternalError("accept", 0, e);
                await Task.WhenAny(Task.Delay(TimeSpan.FromMilliseconds(100), _stop.Token)).ConfigureAwait(false);
                continue;
            }

            if (starved)
            {
                LogAcceptRecovered(_logger, _sessions.Count);
                starved = false;
            }

            try
            {
                Accept(socket);
            }
            catch (Exception e)
            {
                socket.Dispose();
                InternalError("accepting a connection", 0, e);
            }
        }
    }

    private void Accept(Socket socket)
    {
        var (pid, uid) = UnixRights.PeerCredentials(socket);
        var allowed = _options.AllowedUids ?? [Interop.Libc.getuid()];
        bool admin = MayAdminister(uid);
        string? notAllowed = allowed.Contains(uid) ? null : $"User {uid} may not use this node.";
        // The network gateway's connections are not the user's: each becomes a remote session, counted in the
        // remote limits once its GatewayHello is taken; the user's own clients cannot lock remote clients out.
        bool gateway = _gateway is { } g && pid == g.ProcessId;
        string? refusal = notAllowed is not null && !admin
            ? notAllowed
            : !gateway && _sessions.Values.Count(s => s.Uid == uid && (_gateway is not { } h || s.Pid != h.ProcessId)) >= _options.MaxSessionsPerUser
                ? $"User {uid} has {_options.MaxSessionsPerUser} connections open, the most the node allows."
                : null;
        var stream = new NetworkStream(socket, ownsSocket: true);
        int maxFrame = _options.MaxFrameBytes;
        var session = NewSession(pid, uid, inProcess: false);
        new FramedSession(session, PipeReader.Create(stream), PipeWriter.Create(stream), async ct => ToHello(await UnixRights.ReceiveAsync(socket, maxFrame, ct).ConfigureAwait(false)), stream)
            .Start(refusal, helloRefusal: notAllowed, _stop.Token); // an admin user not allowed as a client may ask for the status only
    }

    private static HelloFrame? ToHello((byte[] Frame, List<SafeFileHandle> Descriptors)? received) =>
        received is not { } r ? null : new HelloFrame((FrameType)r.Frame[0], BinaryPrimitives.ReadUInt32LittleEndian(r.Frame.AsSpan(1)), r.Frame[5..], r.Descriptors);

    /// <summary>
    /// A client in this process: no frames, no socket, no IPC; its calls are direct calls into its
    /// session. Its window goes through the same checks as a remote client's (<paramref name="window"/>
    /// is a duplicate the node owns from here on). The session ends when <see cref="NodeSession.EndAsync"/> is called.
    /// </summary>
    /// <exception cref="TubeException">The Hello was refused.</exception>
    internal (NodeSession Session, HelloOk Ok) OpenInProcess(SafeFileHandle window, Hello hello)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            window.Dispose();
            throw new ObjectDisposedException(nameof(TubeNode));
        }

        var session = NewSession(Environment.ProcessId, Interop.Libc.getuid(), inProcess: true);
        try
        {
            var ok = session.Open(hello, [window]);
            var stopping = _stop.Token.Register(static s => ((NodeSession)s!).Abort(), session);
            session.Completion = WaitForEndAsync(session, stopping);
            return (session, ok);
        }
        catch
        {
            _ = session.EndAsync(static () => Task.CompletedTask);
            throw;
        }
    }

    /// <summary>An in-process session's end: when its client disposes, or the node aborts it (then its calls fail, and the client's dispose finds it ended).</summary>
    private static async Task WaitForEndAsync(NodeSession session, CancellationTokenRegistration stopping)
    {
        try
        {
            await Task.Delay(Timeout.Infinite, session.Ended).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        await stopping.DisposeAsync().ConfigureAwait(false);
        await session.EndAsync(static () => Task.CompletedTask).ConfigureAwait(false);
    }

    internal ILogger Logger => _logger;

    internal NodeSession NewSession(int pid, uint uid, bool inProcess)
    {
        long id = Interlocked.Increment(ref _nextSession);
        var session = new NodeSession(this, id, pid, uid, inProcess);
        _sessions[id] = session;
        Metrics.ActiveSessions.Add(1);
        return session;
    }

    /// <summary>
    /// The live session of <paramref name="workflow"/> that <paramref name="id"/>, read as an arena id
    /// (<see cref="TubeId.ForArena"/>), names and has not carved yet; null when there is none (any other id).
    /// </summary>
    internal NodeSession? CarvePending(string workflow, TubeId id)
    {
        var (session, sequence) = id.ArenaParts;
        return _sessions.TryGetValue(session, out var s) && s.Workflow == workflow && !s.HasCarved(sequence) ? s : null;
    }

    /// <summary>
    /// A client went away (closed, crashed, killed) and every request it had running has ended:
    /// everything it held is given back; data it published stays. Called once, by the session.
    /// </summary>
    internal void EndSession(NodeSession session)
    {
        if (!_sessions.TryRemove(session.Id, out _))
        {
            return;
        }

        Metrics.ActiveSessions.Add(-1);
        session.ReleaseAll();
        foreach (var entry in Directory.UnfinishedOf(session.Id))
        {
            Directory.Remove(entry); // an unfinished Put or Allocate of a dead producer
        }

        Names.SessionEnded(session.Id); // its loads in progress fail: their waiters wake, the next caller loads

        foreach (var device in Devices)
        {
            device.Pool.ReleaseHolder(session.Holder);
            device.Pool.ImporterGone(session.Holder);
        }

        LogSessionEnded(_logger, session.Id, session.Pid);
        Interlocked.Exchange(ref _sessionEnded, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        SessionEnded?.Invoke(session.Id);
    }

    private int _ringSessions;

    /// <summary>Takes one of the <see cref="TubeNodeOptions.MaxRingSessions"/> (false when all are taken).</summary>
    internal bool TryTakeRingSession()
    {
        if (Interlocked.Increment(ref _ringSessions) <= _options.MaxRingSessions)
        {
            return true;
        }

        Interlocked.Decrement(ref _ringSessions);
        return false;
    }

    internal void ReturnRingSession() => Interlocked.Decrement(ref _ringSessions);

    /// <summary>The most requests one session ever had running at once (at most <see cref="TubeNodeOptions.MaxRequestsInFlight"/> in slots, and as many Gets again waiting for publishes).</summary>
    internal int PeakRequestsPerSession => Volatile.Read(ref _peakRunning);

    /// <summary>Raised with a session's count of running requests each time one starts (tests wait on it).</summary>
    internal event Action<int>? RequestStarted;

    internal void RecordRunning(int running)
    {
        RequestStarted?.Invoke(running);
        int peak;
        while (running > (peak = Volatile.Read(ref _peakRunning)) && Interlocked.CompareExchange(ref _peakRunning, running, peak) != peak)
        {
        }
    }

    /// <summary>
    /// Whether a client may name <paramref name="workflow"/>: <see cref="TubeNodeOptions.AuthorizeWorkflow"/>
    /// decides when set; otherwise only clients running as the node's own user may (they could read
    /// the node's memory anyway), and any other user may name none.
    /// </summary>
    internal bool MayUseWorkflow(int pid, uint uid, string workflow) =>
        _options.AuthorizeWorkflow is { } authorize ? authorize(new TubeClientCredentials(pid, uid), workflow) : uid == Interop.Libc.getuid();

    /// <summary>Counts bytes handed over on <paramref name="path"/>: the <c>faastube.node.io</c> metric and the admin status's totals.</summary>
    internal void RecordIo(TubePath path, bool transmit, long bytes)
    {
        Metrics.NodeIo.Add(bytes, new(TelemetryTags.Path, path.Tag()), new(TelemetryTags.NodeIoDirection, transmit ? "transmit" : "receive"));
        Interlocked.Add(ref _pathBytes[2 * (int)path + (transmit ? 1 : 0)], bytes);
    }

    /// <summary>Bytes handed over on <paramref name="path"/> since the node started, received (Put) or transmitted (Get).</summary>
    internal long PathBytes(TubePath path, bool transmit) => Interlocked.Read(ref _pathBytes[2 * (int)path + (transmit ? 1 : 0)]);

    /// <summary>The sessions now (the admin status lists them).</summary>
    internal ICollection<NodeSession> Sessions => _sessions.Values;

    /// <summary>
    /// Whether <paramref name="uid"/> may ask for the node's status (the admin request): the node's
    /// own user, or one listed in <see cref="TubeNodeOptions.AdminUids"/>.
    /// </summary>
    internal bool MayAdminister(uint uid) => uid == Interop.Libc.getuid() || (_options.AdminUids?.Contains(uid) ?? false);

    /// <summary>What a client is told when the pool had no room: its request, never other tenants' figures (those go to the log).</summary>
    internal string OutOfMemory(string operation, long session, PoolException exception)
    {
        string reference = Guid.NewGuid().ToString("N")[..12];
        LogOutOfMemory(_logger, operation, session, reference, exception.Message);
        return $"The GPU pool could not make room for {operation} in time (reference {reference}; the node's log has the pool's state).";
    }

    /// <summary>Logs an unexpected failure with a reference and returns what the client is told: the reference, never the details.</summary>
    internal string InternalError(string operation, long session, Exception exception)
    {
        string reference = Guid.NewGuid().ToString("N")[..12];
        LogInternalError(_logger, exception, operation, session, reference);
        return $"The node failed serving {operation} (reference {reference}; the node's log has the details).";
    }

    /// <summary>Raised after a session's leases, mappings and window were given back (tests wait on it).</summary>
    internal event Action<long>? SessionEnded;

    /// <summary>Which ids exist, in which workflow, and where their blocks are.</summary>
    internal DataDirectory Directory { get; }

    /// <summary>The named objects (src/FaaSTube/Channels/Names).</summary>
    internal Names.NameDirectory Names { get; }

    /// <summary>The sweep timer's callback: nothing it meets may end the process.</summary>
    private void SweepQuietly()
    {
        try
        {
            SweepExpired();
        }
        catch (Exception e)
        {
            InternalError("the TTL sweep", 0, e);
        }
    }

    /// <summary>Removes data whose TTL has passed; returns how many. Runs every <see cref="TubeNodeOptions.SweepInterval"/>.</summary>
    public int SweepExpired()
    {
        int removed = 0;
        foreach (var entry in Directory.ExpiredAt(Now))
        {
            removed += Directory.Remove(entry) ? 1 : 0;
        }

        return removed;
    }

    private void OnSlabRetiring(int device, SlabRetiringEventArgs e)
    {
        foreach (var importer in e.Importers)
        {
            if (_sessions.TryGetValue(importer.Value, out var session))
            {
                session.TellToClose(device, e.SlabId, e.Generation);
                _ = CloseOrEndAsync(session, device, e.SlabId, e.Generation);
            }
            else
            {
                Devices[device].Pool.ImporterGone(importer);
            }
        }
    }

    /// <summary>
    /// A client told to close a retiring slab has <see cref="TubeNodeOptions.SlabCloseTimeout"/> to do
    /// so; one that has not by then is ended (its mappings then count as closed), so no client can keep
    /// memory from going back to the device, and with it other tenants' allocations waiting.
    /// </summary>
    private async Task CloseOrEndAsync(NodeSession session, int device, int slab, int generation)
    {
        // A client whose every request slot is taken may not have had its SlabClosed read yet: its
        // deadline is extended while it is that busy, up to four times, never more.
        for (int round = 0; round < 4; round++)
        {
            try
            {
                await Task.Delay(_options.SlabCloseTimeout, _stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return; // the node is stopping: every session ends anyway
            }

            if (!session.HasOpened(device, slab, generation) || !_sessions.ContainsKey(session.Id))
            {
                return;
            }

            if (!session.IsSaturated)
            {
                break;
            }
        }

        LogSlabNotClosed(_logger, session.Id, session.Pid, slab, device, _options.SlabCloseTimeout.TotalSeconds);
        session.Abort();
    }

    /// <summary>
    /// Stops gracefully: stops listening (new clients get <see cref="TubeNodeUnavailableException"/>),
    /// lets the calls in flight finish and answer, until <paramref name="cancellationToken"/> fires
    /// (a host's shutdown timeout) or <see cref="TubeNodeOptions.StopTimeout"/> passes, then disconnects every client and frees the GPUs as
    /// <see cref="DisposeAsync"/> does. A call here is one request: each request already running finishes
    /// and is answered; one not started yet (still waiting for a request slot), and the next request of a
    /// client operation of several (a Put or a Get to host in parts) that is midway, fail with
    /// <see cref="TubeNodeUnavailableException"/>. Gets that wait for data not yet published are not waited for.
    /// </summary>
    /// <param name="cancellationToken">Ends the wait for calls in flight (the node is disposed anyway).</param>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        StopListening();
        var sessions = _sessions.Values.ToArray();
        LogDraining(_logger, sessions.Length);
        using (var grace = new CancellationTokenSource(_options.StopTimeout, _services.TimeProvider))
        using (var patience = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, grace.Token))
        {
            await Task.WhenAll(sessions.Select(s => s.DrainAsync(patience.Token))).ConfigureAwait(false);
        }

        await DisposeAsync().ConfigureAwait(false);
    }

    private void StopListening()
    {
        if (Interlocked.Exchange(ref _listening, 0) == 0)
        {
            return;
        }

        _sweeper?.Dispose();
        _listener?.Dispose();
        if (_listener is not null && _options.SocketPath is { } path)
        {
            File.Delete(path);
        }
    }

    private int _listening = 1;

    /// <summary>Stops listening, disconnects every client (their calls fail with <see cref="TubeNodeUnavailableException"/>), frees the GPUs.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stop.Cancel();
        StopListening();
        await _acceptLoop.ConfigureAwait(false);
        if (_network is not null)
        {
            await _network.StopAcceptingAsync().ConfigureAwait(false);
        }

        if (PeerFetches is { } fetches)
        {
            await fetches.DisposeAsync().ConfigureAwait(false); // fetches running end (their Gets fail); kept links close
        }

        if (_gateway is not null)
        {
            await _gateway.DisposeAsync().ConfigureAwait(false); // it ends its sessions: their local connections close
        }

        foreach (var session in _sessions.Values)
        {
            session.Abort();
        }

        foreach (var session in _sessions.Values)
        {
            await session.Completion.ConfigureAwait(false); // its requests end, then what it held goes back
        }

        _network?.Dispose(); // after its sessions: none of them has a receive into its window left
        Copier.Dispose();
        foreach (var device in Devices)
        {
            await device.DisposeAsync().ConfigureAwait(false);
        }

        Gpus.Dispose();
        LogStopped(_logger);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "FaaSTube node stopping: no new connections; letting the calls in flight of {Sessions} session(s) finish")]
    private static partial void LogDraining(ILogger logger, int sessions);

    [LoggerMessage(Level = LogLevel.Information, Message = "FaaSTube node stopped")]
    private static partial void LogStopped(ILogger logger);

    [LoggerMessage(Level = LogLevel.Information, Message = "FaaSTube node listening on {Path} ({Backend}, {Count} GPU(s))")]
    private static partial void LogListening(ILogger logger, string path, GpuBackend backend, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Removed the stale socket {Path} of a node that is gone")]
    private static partial void LogStaleSocket(ILogger logger, string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot accept connections ({Error}) with {Sessions} sessions open; accepting again when one ends")]
    private static partial void LogAcceptStarved(ILogger logger, SocketError error, int sessions);

    [LoggerMessage(Level = LogLevel.Information, Message = "Accepting connections again ({Sessions} sessions open)")]
    private static partial void LogAcceptRecovered(ILogger logger, int sessions);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Operation} of session {Session} found no memory (reference {Reference}): {Detail}")]
    private static partial void LogOutOfMemory(ILogger logger, string operation, long session, string reference, string detail);

    [LoggerMessage(Level = LogLevel.Error, Message = "{Operation} of session {Session} failed (reference {Reference})")]
    private static partial void LogInternalError(ILogger logger, Exception exception, string operation, long session, string reference);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Session {Session} (pid {Pid}) did not close slab {Slab} of GPU {Device} within {Seconds} s of being told to; ending it")]
    private static partial void LogSlabNotClosed(ILogger logger, long session, int pid, int slab, int device, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Session {Session} (pid {Pid}) ended; its leases and mappings were released")]
    private static partial void LogSessionEnded(ILogger logger, long session, int pid);
}
