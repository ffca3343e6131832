using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net.Sockets;
using FaaSTube.Devices;
using FaaSTube.Memory;
using FaaSTube.Native;
using FaaSTube.Transfers;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FaaSTube.Channels;

/// <summary>
/// The node: one per machine, in the function runtime's process or in a small host program. It owns
/// the GPUs, an elastic pool and a transfer engine per GPU, the directory of data ids, and the client
/// sessions; clients connect over a Unix socket (owner-only, peer credentials checked) or in process.
/// Control messages go over the connection; data moves by DMA, IPC mapping or shared memory.
/// </summary>
public sealed partial class TubeNode : IAsyncDisposable
{
    private readonly ConcurrentDictionary<(string Workflow, TubeId Id), DataEntry> _directory = new();
    private readonly ConcurrentDictionary<long, NodeSession> _sessions = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly ILogger _logger;
    private readonly ITimer? _sweeper;
    private readonly long _start;
    private Socket? _listener;
    private Task _acceptLoop = Task.CompletedTask;
    private long _nextSession;
    private int _disposed;

    private TubeNode(TubeNodeOptions options)
    {
        Options = options;
        _logger = (options.LoggerFactory ?? NullLoggerFactory.Instance).CreateLogger<TubeNode>();
        Gpus = GpuSystem.Open(options.Gpus);
        Router = new PathRouter(Gpus.Topology);
        // Host lanes report to the router, so harvesting never borrows a busy one.
        var transfers = options.Transfers.Router is null ? options.Transfers.WithRouter(Router) : options.Transfers;
        FaaSTube.Devices.Simulated.SharedMemoryFile.SweepDeadOwners(FaaSTube.Devices.Simulated.SharedMemoryFile.DefaultDirectory); // windows of clients that died
        Devices = Gpus.Devices.Select(d => new NodeDevice(d, options.Pool, transfers)).ToArray();
        Copier = new MultiPathCopier(Gpus, Router, pools: Devices.Select(d => d.Pool).ToArray(), engines: Devices.Select(d => d.Engine).ToArray());
        foreach (var device in Devices)
        {
            device.Pool.SlabRetiring += (_, e) => OnSlabRetiring(device.Device.Ordinal, e);
        }

        _start = options.TimeProvider.GetTimestamp();
        if (options.SweepInterval is { } interval)
        {
            _sweeper = options.TimeProvider.CreateTimer(_ => SweepExpired(), null, interval, interval);
        }
    }

    /// <summary>The node's settings.</summary>
    public TubeNodeOptions Options { get; }

    /// <summary>The GPUs the node owns.</summary>
    public GpuSystem Gpus { get; }

    /// <summary>The socket clients connect to (null: in-process only).</summary>
    public string? SocketPath => _listener is null ? null : Options.SocketPath;

    /// <summary>Clients connected now.</summary>
    public int SessionCount => _sessions.Count;

    internal NodeDevice[] Devices { get; }

    /// <summary>The node's view of the links between its GPUs (reservations of its copies).</summary>
    public PathRouter Router { get; }

    internal MultiPathCopier Copier { get; }

    internal TimeSpan Now => Options.TimeProvider.GetElapsedTime(_start);

    /// <summary>The pool of a GPU (for statistics).</summary>
    /// <param name="device">The GPU's ordinal.</param>
    public GpuMemoryPool PoolOf(int device) => Devices[device].Pool;

    /// <summary>
    /// Starts a node: opens the GPUs, and listens on <see cref="TubeNodeOptions.SocketPath"/> (owner-only).
    /// A socket file left by a dead node is removed; one that a live node answers on is not.
    /// </summary>
    /// <param name="options">Settings; null for the defaults.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <exception cref="InvalidOperationException">Another node is live on the socket.</exception>
    public static async Task<TubeNode> StartAsync(TubeNodeOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new TubeNodeOptions();
        var node = new TubeNode(options);
        try
        {
            if (options.SocketPath is { } path)
            {
                await node.ListenAsync(path, cancellationToken).ConfigureAwait(false);
            }

            return node;
        }
        catch
        {
            await node.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

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
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        listener.Listen(128);
        _listener = listener;
        _acceptLoop = Task.Run(AcceptLoopAsync);
        LogListening(_logger, path, Gpus.Backend, Gpus.Devices.Count);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener!.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            var (pid, uid) = PeerCredentials(socket);
            var stream = new NetworkStream(socket, ownsSocket: true);
            var allowed = Options.AllowedUids ?? [Interop.Libc.getuid()];
            StartSession(PipeReader.Create(stream), PipeWriter.Create(stream), pid, uid, inProcess: false, denied: !allowed.Contains(uid), stream);
        }
    }

    /// <summary>SO_PEERCRED: (pid, uid) of the connecting process.</summary>
    private static (int Pid, uint Uid) PeerCredentials(Socket socket)
    {
        Span<byte> creds = stackalloc byte[12];
        if (OperatingSystem.IsLinux() && socket.GetRawSocketOption(1, 17, creds) == 12)
        {
            return (BitConverter.ToInt32(creds), BitConverter.ToUInt32(creds[4..]));
        }

        return (0, uint.MaxValue);
    }

    /// <summary>A client in this process: the same protocol over in-memory pipes, no socket, no IPC.</summary>
    internal (PipeReader Reader, PipeWriter Writer) ConnectInProcess()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var toNode = new Pipe();
        var toClient = new Pipe();
        StartSession(toNode.Reader, toClient.Writer, Environment.ProcessId, Interop.Libc.getuid(), inProcess: true, denied: false, null);
        return (toClient.Reader, toNode.Writer);
    }

    private void StartSession(PipeReader reader, PipeWriter writer, int pid, uint uid, bool inProcess, bool denied, IDisposable? transport)
    {
        long id = Interlocked.Increment(ref _nextSession);
        var session = new NodeSession(this, id, reader, writer, pid, uid, inProcess, transport);
        _sessions[id] = session;
        ChannelMetrics.Sessions.Add(1);
        _ = session.RunAsync(denied, _stop.Token).ContinueWith(_ => EndSession(session), TaskScheduler.Default);
    }

    /// <summary>A client went away (closed, crashed, killed): everything it held is given back; data it published stays.</summary>
    private void EndSession(NodeSession session)
    {
        if (!_sessions.TryRemove(session.Id, out _))
        {
            return;
        }

        ChannelMetrics.Sessions.Add(-1);
        session.ReleaseAll();
        foreach (var entry in _directory.Values.Where(e => e.OwnerSession == session.Id && !e.Committed))
        {
            RemoveEntry(entry); // an unfinished Put or Allocate of a dead producer
        }

        foreach (var device in Devices)
        {
            device.Pool.ReleaseHolder(session.Id);
            device.Pool.ImporterGone(session.Id);
        }

        LogSessionEnded(_logger, session.Id, session.Pid);
        SessionEnded?.Invoke(session.Id);
    }

    /// <summary>Raised after a session's leases, mappings and window were given back (tests wait on it).</summary>
    internal event Action<long>? SessionEnded;

    internal DataEntry Register(DataEntry entry)
    {
        _directory[(entry.Workflow, entry.Id)] = entry;
        return entry;
    }

    /// <summary>The committed entry of <paramref name="id"/> in <paramref name="workflow"/>; another workflow's id is simply not found.</summary>
    internal DataEntry Find(string workflow, TubeId id, long session = -1) =>
        _directory.TryGetValue((workflow, id), out var e) && (e.Committed || e.OwnerSession == session)
            ? e
            : throw new TubeException(TubeError.NotFound, $"No data {id} in workflow '{workflow}'.");

    internal DataEntry? TryFind(string workflow, TubeId id) => _directory.GetValueOrDefault((workflow, id));

    /// <summary>Takes an entry out of the directory and drops the directory's leases: its blocks are freed when no session holds them.</summary>
    internal void RemoveEntry(DataEntry entry)
    {
        if (!_directory.TryRemove(new KeyValuePair<(string, TubeId), DataEntry>((entry.Workflow, entry.Id), entry)))
        {
            return;
        }

        lock (entry.Sync)
        {
            foreach (var block in entry.Blocks())
            {
                if (!block.IsFreed && block.LeaseCount > 0)
                {
                    try
                    {
                        block.Pool.Release(block, entry.Committed ? DataEntry.DirectoryHolder : entry.OwnerSession);
                    }
                    catch (PoolException e) when (e.Error is PoolError.LeaseNotHeld or PoolError.Stale)
                    {
                        // Already given back by the session's end.
                    }
                }
            }
        }
    }

    /// <summary>Removes data whose TTL has passed; returns how many. Runs every <see cref="TubeNodeOptions.SweepInterval"/>.</summary>
    public int SweepExpired()
    {
        var now = Now;
        int removed = 0;
        foreach (var entry in _directory.Values.Where(e => e.Committed && e.ExpiresAt is { } at && at <= now).ToList())
        {
            RemoveEntry(entry);
            removed++;
        }

        return removed;
    }

    private void OnSlabRetiring(int device, SlabRetiringEventArgs e)
    {
        foreach (var importer in e.Importers)
        {
            if (_sessions.TryGetValue(importer, out var session))
            {
                session.TellToClose(device, e.SlabId, e.Generation);
            }
            else
            {
                Devices[device].Pool.ImporterGone(importer);
            }
        }
    }

    /// <summary>Stops listening, disconnects every client (their calls fail with <see cref="TubeNodeUnavailableException"/>), frees the GPUs.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stop.Cancel();
        _sweeper?.Dispose();
        _listener?.Dispose();
        if (_listener is not null && Options.SocketPath is { } path)
        {
            File.Delete(path);
        }

        await _acceptLoop.ConfigureAwait(false);
        foreach (var session in _sessions.Values)
        {
            await session.CloseAsync().ConfigureAwait(false);
            EndSession(session);
        }

        Copier.Dispose();
        foreach (var device in Devices)
        {
            device.Dispose();
        }

        Gpus.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "FaaSTube node listening on {Path} ({Backend}, {Count} GPU(s))")]
    private static partial void LogListening(ILogger logger, string path, GpuBackend backend, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Removed the stale socket {Path} of a node that is gone")]
    private static partial void LogStaleSocket(ILogger logger, string path);

    [LoggerMessage(Level = LogLevel.Information, Message = "Session {Session} (pid {Pid}) ended; its leases and mappings were released")]
    private static partial void LogSessionEnded(ILogger logger, long session, int pid);
}
