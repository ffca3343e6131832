using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;
using FaaSTube.Channels.Client;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Transport;
using FaaSTube.Devices;
using FaaSTube.Diagnostics;
using FaaSTube.Hosting;

namespace FaaSTube.Channels;

/// <summary>
/// A function's connection to the node: Put / Allocate / Publish / Get / Release. Over the node's
/// Unix socket (<see cref="ConnectAsync(TubeClientOptions, CancellationToken)"/>) or directly in the node's own process
/// (<see cref="ConnectInProcessAsync"/>), with the same API and semantics. Thread-safe; many calls
/// may be in flight. If the node dies, every pending and later call throws
/// <see cref="TubeNodeUnavailableException"/>.
/// <para>Synchronisation rule: data must be complete before it is published. <see cref="PublishAsync"/>
/// synchronises the stream the producer wrote with before it tells the node; the node's own copies
/// (Put, peer copies, restores) complete before it answers, so a consumer's Get returns memory whose
/// writes are finished.</para>
/// </summary>
public sealed partial class TubeClient : IAsyncDisposable
{
    private readonly TubeClientOptions _options;
    private readonly TubeNode? _inProcessNode;
    private readonly bool _ownsGpus;
    private readonly ClientWindow _window;
    private readonly ClientMappings _mappings;
    private readonly ConcurrentQueue<TubeException> _oneWayErrors = new();
    private readonly ChannelMetrics _metrics;
    private readonly ClientArena? _arena;
    private long _carves;

    /// <summary>The carve gate: one arena carve (drawn, numbered, posted) or range return at a time (<see cref="CarveAsync"/>).</summary>
    private readonly SemaphoreSlim _carving = new(1, 1);
    private INodeConnection? _connection;

    /// <summary>Builds the client around a window and GPUs already open (no I/O here: <see cref="ConnectAsync(TubeClientOptions, CancellationToken)"/> opens them).</summary>
    private TubeClient(TubeClientOptions options, ClientWindow window, GpuSystem gpus, TubeNode? node, FaaSTubeServices services)
    {
        Services = services;
        _metrics = ChannelMetrics.For(services.MeterFactory);
        _options = options;
        _window = window;
        _inProcessNode = node;
        _mappings = new ClientMappings(SlabClosedAsync);
        _ownsGpus = node is null;
        Gpus = gpus;
        _arena = options.ArenaBytes > 0
            ? new ClientArena(options.ArenaBytes, options.ArenaIdleTime, services.TimeProvider, LeaseRangeAsync, ReturnRangeAsync)
            : null;
    }

    /// <summary>The client's arena ranges (null when <see cref="TubeClientOptions.ArenaBytes"/> is 0).</summary>
    internal ClientArena? Arena => _arena;

    /// <summary>The logger factory, meter factory and clock the client runs with (from the container with <c>AddFaaSTubeClient</c>).</summary>
    internal FaaSTubeServices Services { get; }

    /// <summary>True while the connection to the node stands (false once the node went away or the client was disposed).</summary>
    public bool IsConnected => _connection is { IsLost: false };

    /// <summary>
    /// A Publish or Release failed on the node after the call that sent it had returned (they go one
    /// way: no round trip). Raised on the thread pool; a handler's exception is ignored. The same
    /// refusal is also thrown, once, by this client's next call that expects an answer (that call is
    /// then not made: repeat it) or by <see cref="FlushAsync"/>, so it is never lost.
    /// </summary>
    public event EventHandler<TubeErrorEventArgs>? OneWayFailed;

    /// <summary>The GPUs as this process sees them (for its own streams and kernels).</summary>
    public GpuSystem Gpus { get; }

    /// <summary>The session id the node gave this client.</summary>
    public long SessionId { get; private set; }

    /// <summary>Whether this client's requests go on a control ring (the node took it).</summary>
    internal bool UsesControlRing => _connection is FramedConnection { UsesRing: true };

    /// <summary>Slabs mapped into this process now (imported and not yet closed).</summary>
    internal int SlabsMapped => _mappings.Mapped;

    /// <summary>How many slabs this client has mapped (each once, then reused).</summary>
    public int SlabsOpened => _mappings.Opened;

    /// <summary>Connects to the node on <see cref="TubeClientOptions.SocketPath"/>, or to a node on another machine at <see cref="TubeClientOptions.Address"/> (<c>ucx://host:port</c>: host data only).</summary>
    /// <param name="options">Workflow, function, socket.</param>
    /// <param name="cancellationToken">Cancels the connection attempt.</param>
    /// <exception cref="TubeNodeUnavailableException">No node answers there.</exception>
    public static Task<TubeClient> ConnectAsync(TubeClientOptions options, CancellationToken cancellationToken = default) =>
        ConnectAsync(options, FaaSTubeServices.Default, cancellationToken);

    internal static async Task<TubeClient> ConnectAsync(TubeClientOptions options, FaaSTubeServices services, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();

        // A client call like the others (faastube.connect, kind client); the Hello carries no trace
        // context, so the node's side of it is not in the trace.
        using var span = Telemetry.ActivitySource.StartActivity("faastube.connect", ActivityKind.Client);
        span?.SetTag(TelemetryTags.Operation, "connect");
        span?.SetTag(TelemetryTags.Workflow, options.Workflow);
        try
        {
            return await ConnectCoreAsync(options, services, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Spans.Fail(span, e);
            throw;
        }
    }

    private static async Task<TubeClient> ConnectCoreAsync(TubeClientOptions options, FaaSTubeServices services, CancellationToken cancellationToken)
    {
        if (options.Address is not null)
        {
            return await ConnectRemoteAsync(options, services, cancellationToken).ConfigureAwait(false); // TubeClient.Remote.cs
        }

        var window = new ClientWindow(options.WindowBytes);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(options.SocketPath), cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            window.Dispose();
            throw new TubeNodeUnavailableException($"No FaaSTube node answers on {options.SocketPath}.", e);
        }

        // The window (and every Put's bytes) goes to whoever listens on the path: make sure it is the node's user.
        uint nodeUid = UnixRights.PeerCredentials(socket).Uid;
        uint self = FaaSTube.Native.Interop.Libc.getuid();
        if (options.NodeUid is { } expected ? nodeUid != expected : nodeUid != self && nodeUid != 0)
        {
            socket.Dispose();
            window.Dispose();
            throw new TubeNodeUnavailableException($"The process on {options.SocketPath} runs as user {nodeUid}, not as the node's user ({options.NodeUid?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "this process's own or root"}).");
        }

        ControlRing? ring = null;
        TubeClient client;
        try
        {
            ring = options.ControlRingBytes > 0 ? ControlRing.Create(options.ControlRingBytes) : null;
            client = new TubeClient(options, window, GpuSystem.Open(options.Gpus, services), null, services);
        }
        catch
        {
            ring?.Dispose(); // nothing owns them yet
            socket.Dispose();
            window.Dispose();
            throw;
        }

        var connection = new FramedConnection(socket, ring, options.CallTimeout, client.OnCloseSlab, client.OnOneWayFailed);
        client._connection = connection;
        return await client.StartAsync(() => connection.HelloAsync(client.NewHello(), window.Descriptor, cancellationToken)).ConfigureAwait(false);
    }

    /// <summary>Connects to a node in this process: no socket and no IPC handles, the same calls and semantics.</summary>
    /// <param name="node">The node.</param>
    /// <param name="options">Workflow and function (the socket path is not used).</param>
    /// <param name="cancellationToken">Cancels the handshake.</param>
    public static async Task<TubeClient> ConnectInProcessAsync(TubeNode node, TubeClientOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var window = new ClientWindow(options.WindowBytes);
        var client = new TubeClient(options, window, node.Gpus, node, node.Services);
        return await client.StartAsync(() =>
        {
            var (session, ok) = node.OpenInProcess(window.Duplicate(), client.NewHello());
            client._connection = new DirectConnection(session, client.OnOneWayFailed);
            return Task.FromResult(ok);
        }).ConfigureAwait(false);
    }

    private Hello NewHello() => new(Frames.Version, _options.Workflow, _options.Function, _window.Length, RingBytes: 0);

    private async Task<TubeClient> StartAsync(Func<Task<HelloOk>> hello)
    {
        try
        {
            var ok = await hello().ConfigureAwait(false);
            SessionId = ok.SessionId;
            if (!_remote && ok.Backend != Gpus.Backend)
            {
                throw new InvalidOperationException($"The node runs the {ok.Backend} backend; this client opened {Gpus.Backend} (set TubeClientOptions.Gpus.Backend).");
            }

            return this;
        }
        catch
        {
            await DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Allocates pool memory on a GPU, mapped into this process, for the function's kernels to write;
    /// then <see cref="PublishAsync"/>. With <see cref="TubeClientOptions.ArenaBytes"/> set, an
    /// allocation that fits is carved from a range of pool memory this client holds, with no round trip.
    /// </summary>
    /// <param name="bytes">Size.</param>
    /// <param name="device">The GPU.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<TubeBuffer> AllocateAsync(long bytes, int device = 0, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        ArgumentOutOfRangeException.ThrowIfNegative(device);
        using var call = Call("allocate", device: device);
        try
        {
            call.Path = TubePath.ZeroCopy.Tag();
            if (_arena is { } arena && Interlocked.Read(ref _carves) < uint.MaxValue && await CarveAsync(arena, device, bytes, cancellationToken).ConfigureAwait(false) is { } piece)
            {
                return await MapOrReleaseAsync(piece.Id, piece.Mapping, TubePath.ZeroCopy, writable: true).ConfigureAwait(false);
            }

            var ok = await CallAsync(new Allocate(bytes, device), cancellationToken).ConfigureAwait(false);
            return await MapOrReleaseAsync(ok.Id, ok.Mapping, TubePath.ZeroCopy, writable: true).ConfigureAwait(false);
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    /// <summary>
    /// Publishes an allocation the function wrote in place (zero copy): synchronises
    /// <paramref name="writer"/> first, so the data is complete, then makes the id visible to the
    /// workflow. The publish goes one way (no round trip): consumers already waiting in
    /// <see cref="GetAsync(TubeId, int, CancellationToken)"/> get it as soon as the node reads it; if the node refuses it,
    /// <see cref="OneWayFailed"/> is raised and this client's next call throws the refusal.
    /// </summary>
    /// <param name="buffer">From <see cref="AllocateAsync"/>.</param>
    /// <param name="writer">
    /// The stream the data was written on, synchronised before publishing: for work issued by the
    /// function's own kernels or a framework, the <see cref="GpuDevice.WrapStream"/> of its native
    /// stream (an event is recorded on it and waited for), so no consumer sees bytes from before that work finished.
    /// </param>
    /// <param name="options">Consumers, TTL, pinning.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<TubeId> PublishAsync(TubeBuffer buffer, GpuStream writer, PutOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        ArgumentNullException.ThrowIfNull(writer);
        options ??= new PutOptions();
        if (!options.KeepUntilDeleted && options.Consumers < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.Consumers, "Data needs at least one consumer (or KeepUntilDeleted).");
        }

        if (!buffer.IsWritable || !buffer.MarkPublished())
        {
            throw new InvalidOperationException($"{buffer.Id} is not an unpublished allocation.");
        }

        using var call = Call("publish", buffer.Id);
        call.Path = TubePath.ZeroCopy.Tag();
        try
        {
            await writer.SynchronizeAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            call.Failed(e);
            buffer.MarkUnpublished(); // still the client's: its dispose releases it (the node would otherwise hold it until the connection closes)
            throw;
        }

        // One way: the node applies it before anything this client sends later; a failure is reported
        // by OneWayFailed and the next call. The buffer's use of the slab ends here either way.
        await Connection.PostAsync(new Publish(buffer.Id, options.Consumers, options.Ttl?.Ticks ?? 0, options.KeepUntilDeleted)).ConfigureAwait(false);
        buffer.EndSlabUse(); // the buffer no longer uses the slab mapping (its dispose ending it again is a no-op)
        return buffer.Id;
    }

    /// <summary>
    /// The data of <paramref name="id"/> on GPU <paramref name="device"/>, read-only: on the GPU that
    /// holds it, its pool memory mapped here (zero copy); on another GPU, a copy the node made once
    /// over the peer path; if it was evicted, restored first (<see cref="TubeBuffer.Path"/> says which).
    /// Data that is allocated but not yet published is waited for, up to
    /// <see cref="TubeClientOptions.PublishWait"/>, so a consumer may ask before its producer is done.
    /// One round trip. Dispose the buffer when done.
    /// </summary>
    /// <param name="id">The data.</param>
    /// <param name="device">Where the consumer runs.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<TubeBuffer> GetAsync(TubeId id, int device = 0, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(device);
        using var call = Call("get", id, device);
        try
        {
            var ok = await CallAsync(new Get(id, device, PublishWaitMilliseconds), cancellationToken).ConfigureAwait(false);
            call.Path = ok.Path.Tag();
            return await MapOrReleaseAsync(id, ok.Mapping, ok.Path, writable: false).ConfigureAwait(false);
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    /// <summary>
    /// Releases one lease this client holds on <paramref name="id"/> (a consumer is done). One way:
    /// it returns once the release is on its way; if the node refuses it (no such lease),
    /// <see cref="OneWayFailed"/> is raised and this client's next call throws the refusal.
    /// </summary>
    /// <param name="id">The data.</param>
    /// <param name="cancellationToken">Not used: the release is already on its way when a wait could start.</param>
    public async ValueTask ReleaseAsync(TubeId id, CancellationToken cancellationToken = default)
    {
        using var call = Call("release", id);
        await PostReleaseAsync(id).ConfigureAwait(false); // one way, usually done at once (a ValueTask: docs/architecture.md); an earlier refusal does not stop it (it would leak the lease)
    }

    /// <summary>
    /// Waits until the node has applied every Publish and Release this client sent before, and throws
    /// the refusals they met that no call has thrown yet (the ones <see cref="OneWayFailed"/> reported):
    /// the first, with the count of the others and all of them in its inner <see cref="AggregateException"/>.
    /// </summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    public async Task FlushAsync(CancellationToken cancellationToken = default)
    {
        using var call = Call("flush");
        try
        {
            await FlushCoreAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    private async Task FlushCoreAsync(CancellationToken cancellationToken)
    {
        await Connection.CallAsync(new Sync(), cancellationToken).ConfigureAwait(false);
        var refused = new List<TubeException>();
        while (_oneWayErrors.TryDequeue(out var e))
        {
            refused.Add(e);
        }

        if (refused.Count > 0)
        {
            var first = refused[0];
            throw new TubeException(first.Error, refused.Count == 1
                ? $"An earlier one-way request failed: {first.Reason}"
                : $"{refused.Count} earlier one-way requests failed; the first: {first.Reason}", new AggregateException(refused));
        }
    }

    /// <summary>The GPU that holds <paramref name="id"/>, to place its consumer next to it.</summary>
    /// <param name="id">The data.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<int> WhereAsync(TubeId id, CancellationToken cancellationToken = default)
    {
        using var call = Call("where", id);
        try
        {
            return (await CallAsync(new Where(id), cancellationToken).ConfigureAwait(false)).Device;
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    /// <summary>Removes data now (data kept until deleted is only removed this way); held leases keep it alive until released.</summary>
    /// <param name="id">The data.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task DeleteAsync(TubeId id, CancellationToken cancellationToken = default)
    {
        using var call = Call("delete", id);
        try
        {
            await CallAsync(new Delete(id), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    /// <summary>
    /// Sends any request as it is (tests forge requests with it); the node's answer payload, or its
    /// error as a <see cref="TubeException"/>. A one-way type returns once applied and throws its refusal.
    /// </summary>
    internal async Task<byte[]> CallRawAsync(FrameType type, PayloadWriter payload)
    {
        var reply = await Connection.CallRawAsync(type, payload.Memory, CancellationToken.None).ConfigureAwait(false);
        if (OneWay.Is(type))
        {
            ThrowOneWayFailure();
        }

        return reply;
    }

    /// <summary>A client call's span and duration (<c>faastube.{operation}</c>, <see cref="System.Diagnostics.ActivityKind.Client"/>).</summary>
    internal ClientCall Call(string operation, TubeId? id = null, int? device = null) => ClientCall.Start(_metrics, operation, _options.Workflow, id, device);

    /// <summary>Releases a lease or drops an unfinished allocation (one way; never throws: a lost node took the lease with it).</summary>
    internal ValueTask PostReleaseAsync(TubeId id) => Connection.PostAsync(new Release(id));

    /// <summary>Drops what this client held on <paramref name="id"/> after a failed Put or Get (one way).</summary>
    private async Task TryReleaseAsync(TubeId id) => await PostReleaseAsync(id).ConfigureAwait(false);

    /// <summary>A Get's wait for a publish: <see cref="TubeClientOptions.PublishWait"/>, at most half the call timeout (the answer must come before the call gives up).</summary>
    private int PublishWaitMilliseconds => (int)Math.Min(int.MaxValue, Math.Min(_options.PublishWait.TotalMilliseconds, _options.CallTimeout.TotalMilliseconds / 2));

    private INodeConnection Connection => _connection ?? throw new TubeNodeUnavailableException("The client is not connected.");

    /// <summary>
    /// A one-way request's refusal arrived (on the connection's receiving thread): it is kept for the
    /// next call, and the event is raised on the thread pool, so a handler that blocks or throws
    /// cannot stop the connection from delivering answers.
    /// </summary>
    private void OnOneWayFailed(TubeException refused, IRequest? request)
    {
        _oneWayErrors.Enqueue(refused);
        var about = request switch
        {
            Publish p => (Operation: "Publish", Id: (TubeId?)p.Id),
            Release r => ("Release", r.Id),
            ArenaCarve c => ("Allocate", c.Id),
            ArenaReturn => ("ArenaReturn", null),
            _ => ((string?)null, null),
        };
        if (OneWayFailed is { } handlers)
        {
            ThreadPool.UnsafeQueueUserWorkItem(
                static state =>
                {
                    var (client, handler, error, operation, id) = state;
                    try
                    {
                        handler(client, new TubeErrorEventArgs(error, operation, id));
                    }
                    catch (Exception)
                    {
                        // A handler's own failure is the handler's: the connection goes on.
                    }
                },
                (this, handlers, refused, about.Operation, about.Id),
                preferLocal: false);
        }
    }

    /// <summary>Throws the oldest one-way refusal not yet reported to a call (before a two-way call, which is then not made).</summary>
    private void ThrowOneWayFailure()
    {
        if (_oneWayErrors.TryDequeue(out var refused))
        {
            throw new TubeException(refused.Error, $"An earlier one-way request failed: {refused.Reason}", refused);
        }
    }

    /// <summary>
    /// Carves from the range this client holds (no round trip) and tells the node one way; null when
    /// the arena cannot serve it. The node checks the piece against its own map of the range; a refusal
    /// comes as any one-way error. The id names this session and the carve's sequence, so a consumer's
    /// Get that overtakes the carve waits for it (<see cref="TubeId.ForArena"/>). Carves are drawn,
    /// numbered and posted one at a time under the carve gate, and returns take the gate too: the
    /// node sees this client's carves in sequence order, and a range's return after every carve of it,
    /// however many threads allocate at once.
    /// </summary>
    private async Task<(TubeId Id, Mapping Mapping)?> CarveAsync(ClientArena arena, int device, long bytes, CancellationToken cancellationToken)
    {
        await _carving.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (await arena.CarveAsync(device, bytes).ConfigureAwait(false) is not { } carved)
            {
                return null;
            }

            var id = TubeId.ForArena(SessionId, (uint)Interlocked.Increment(ref _carves));
            await Connection.PostAsync(new ArenaCarve(carved.Range.Number, id, carved.Offset, bytes)).ConfigureAwait(false);
            return (id, carved.Range.PieceAt(carved.Offset, bytes));
        }
        finally
        {
            _carving.Release();
        }
    }

    /// <summary>Leases an arena range on <paramref name="device"/> (one round trip) and keeps its slab mapped while the client holds it.</summary>
    private async Task<ArenaRange> LeaseRangeAsync(int device)
    {
        var ok = await CallAsync(new ArenaLease(_options.ArenaBytes, device), CancellationToken.None).ConfigureAwait(false);
        try
        {
            return new ArenaRange(ok.Range, ok.Mapping, UseSlab(ok.Mapping));
        }
        catch
        {
            await Connection.PostAsync(new ArenaReturn(ok.Range)).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Gives a range back (one way); never throws: a lost node took the range with the session.</summary>
    private async ValueTask ReturnRangeAsync(ArenaRange range)
    {
        await _carving.WaitAsync().ConfigureAwait(false); // after every carve already drawn from the range
        try
        {
            if (_connection is { IsLost: false } connection)
            {
                await connection.PostAsync(new ArenaReturn(range.Number)).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is FaaSTubeException or ObjectDisposedException)
        {
            // The connection closed under it: the node returned the range with the session.
        }
        finally
        {
            _carving.Release();
        }
    }

    /// <summary>Maps an answer's mapping; when that fails, the lease the node granted for it is released, not left until the connection closes.</summary>
    private async Task<TubeBuffer> MapOrReleaseAsync(TubeId id, Mapping? mapping, TubePath path, bool writable)
    {
        try
        {
            return MapReply(id, mapping ?? throw new InvalidDataException($"The node sent no mapping for {id}."), path, writable);
        }
        catch
        {
            await PostReleaseAsync(id).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Maps (device, slab, generation, offset, length, handle) into a buffer: the slab is imported once and cached.</summary>
    private TubeBuffer MapReply(TubeId id, Mapping m, TubePath path, bool writable)
    {
        var use = UseSlab(m);
        try
        {
            return new TubeBuffer(this, id, use.Slab.Slice(m.Offset, m.Length), use, writable, path);
        }
        catch
        {
            use.Dispose();
            throw;
        }
    }

    /// <summary>A use of the slab a mapping names: imported once (from the handle) and cached, or the node's own memory in process.</summary>
    private ClientMappings.SlabUse UseSlab(Mapping m)
    {
        var (device, slab, generation, _, _, handle) = m;
        return _mappings.Use((device, slab, generation), () =>
            _inProcessNode is { } node
                ? (node.PoolOf(device).SlabBuffer(slab, generation), false)
                : handle.Length > 0
                    ? (Gpus.Devices[device].Import(IpcMemoryHandle.ReadFrom(handle)), true)
                    : throw new TubeException(TubeError.Internal, $"The node sent no handle for slab {slab} of GPU {device}, which this client has not opened."));
    }

    private void OnCloseSlab(CloseSlab close) => _mappings.CloseRequested((close.Device, close.Slab, close.Generation));

    /// <summary>Tells the node a slab is closed here (after the table unmapped it).</summary>
    private async Task SlabClosedAsync((int Device, int Slab, int Generation) key)
    {
        try
        {
            await Connection.CallAsync(new SlabClosed(key.Device, key.Slab, key.Generation), CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TubeException or TubeNodeUnavailableException)
        {
            // The node forgot it already, or is gone.
        }
    }

    /// <summary>One request and its typed answer; an earlier one-way refusal not yet reported is thrown first.</summary>
    private Task<TReply> CallAsync<TReply>(IRequest<TReply> request, CancellationToken cancellationToken)
        where TReply : IPayload<TReply>
    {
        ThrowOneWayFailure();
        return Connection.CallAsync(request, cancellationToken);
    }

    /// <summary>Closes the connection (the node releases everything this client held) and the window.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_arena is { } arena)
        {
            await arena.ReturnAllAsync().ConfigureAwait(false); // one way each; the connection's close would return them too
            arena.Dispose();
        }

        if (_connection is { } connection)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }

        _mappings.DisposeAll();
        if (!_borrowedWindow)
        {
            _window.Dispose();
        }

        if (_ownsGpus)
        {
            Gpus.Dispose();
        }
    }
}
