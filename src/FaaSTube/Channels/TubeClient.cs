using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Sockets;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Channels.Transport;
using FaaSTube.Devices;

namespace FaaSTube.Channels;

/// <summary>
/// A function's connection to the node: Put / Allocate / Publish / Get / Release. Over the node's
/// Unix socket (<see cref="ConnectAsync"/>) or directly in the node's own process
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
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<byte[]>> _pending = new();
    private readonly TubeClientOptions _options;
    private readonly PipeReader _reader;
    private readonly FrameWriter _writer;
    private readonly TubeNode? _inProcessNode;
    private readonly bool _ownsGpus;
    private readonly ClientWindow _window;
    private readonly SemaphoreSlim[] _halves = [new(1, 1), new(1, 1)];
    private Task _readLoop = Task.CompletedTask;
    private uint _nextRequest;
    private Exception? _dead;

    private readonly Socket? _socket;
    private readonly ClientMappings _mappings;

    private TubeClient(TubeClientOptions options, ClientWindow window, PipeReader reader, PipeWriter writer, Socket? socket, IDisposable? transport, TubeNode? node)
    {
        _options = options;
        _window = window;
        _reader = reader;
        _writer = new FrameWriter(writer, transport);
        _socket = socket;
        _inProcessNode = node;
        _mappings = new ClientMappings(SlabClosedAsync);
        _ownsGpus = node is null;
        Gpus = node?.Gpus ?? GpuSystem.Open(options.Gpus);
    }

    /// <summary>The GPUs as this process sees them (for its own streams and kernels).</summary>
    public GpuSystem Gpus { get; }

    /// <summary>The session id the node gave this client.</summary>
    public long SessionId { get; private set; }

    /// <summary>Slabs mapped into this process now (imported and not yet closed).</summary>
    internal int SlabsMapped => _mappings.Mapped;

    /// <summary>How many slabs this client has mapped (each once, then reused).</summary>
    public int SlabsOpened => _mappings.Opened;

    /// <summary>Connects to the node on <see cref="TubeClientOptions.SocketPath"/>.</summary>
    /// <param name="options">Workflow, function, socket.</param>
    /// <param name="cancellationToken">Cancels the connection attempt.</param>
    /// <exception cref="TubeNodeUnavailableException">No node answers there.</exception>
    public static async Task<TubeClient> ConnectAsync(TubeClientOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
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

        var stream = new NetworkStream(socket, ownsSocket: true);
        return await StartAsync(new TubeClient(options, window, PipeReader.Create(stream), PipeWriter.Create(stream), socket, stream, null), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Connects to a node in this process: no socket and no IPC handles, the same calls and semantics.</summary>
    /// <param name="node">The node.</param>
    /// <param name="options">Workflow and function (the socket path is not used).</param>
    /// <param name="cancellationToken">Cancels the handshake.</param>
    public static async Task<TubeClient> ConnectInProcessAsync(TubeNode node, TubeClientOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(options);
        var window = new ClientWindow(options.WindowBytes);
        PipeReader reader;
        PipeWriter writer;
        try
        {
            (reader, writer) = node.ConnectInProcess(window.Duplicate());
        }
        catch
        {
            window.Dispose();
            throw;
        }

        return await StartAsync(new TubeClient(options, window, reader, writer, null, null, node), cancellationToken).ConfigureAwait(false);
    }

    private static async Task<TubeClient> StartAsync(TubeClient client, CancellationToken cancellationToken)
    {
        try
        {
            client._readLoop = Task.Run(client.ReadLoopAsync, CancellationToken.None);
            var hello = new Hello(Frames.Version, client._options.Workflow, client._options.Function, client._window.Length);
            var ok = await client.CallAsync(hello, cancellationToken).ConfigureAwait(false);
            client.SessionId = ok.SessionId;
            var backend = ok.Backend;
            if (backend != client.Gpus.Backend)
            {
                throw new InvalidOperationException($"The node runs the {backend} backend; this client opened {client.Gpus.Backend} (set TubeClientOptions.Gpus.Backend).");
            }

            return client;
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Allocates pool memory on a GPU, mapped into this process, for the function's kernels to write; then <see cref="PublishAsync"/>.</summary>
    /// <param name="bytes">Size.</param>
    /// <param name="device">The GPU.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<TubeBuffer> AllocateAsync(long bytes, int device = 0, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        var ok = await CallAsync(new Allocate(bytes, device), cancellationToken).ConfigureAwait(false);
        return await MapOrReleaseAsync(ok.Id, ok.Mapping, writable: true).ConfigureAwait(false);
    }

    /// <summary>
    /// Publishes an allocation the function wrote in place (zero copy): synchronises
    /// <paramref name="writer"/> first, so the data is complete, then makes the id visible to the workflow.
    /// </summary>
    /// <param name="buffer">From <see cref="AllocateAsync"/>.</param>
    /// <param name="writer">The stream the data was written on (synchronised before publishing).</param>
    /// <param name="options">Consumers, TTL, pinning.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<TubeId> PublishAsync(TubeBuffer buffer, GpuStream writer, PutOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        ArgumentNullException.ThrowIfNull(writer);
        options ??= new PutOptions();
        if (!options.Pinned && options.Consumers < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.Consumers, "Data needs at least one consumer (or Pinned).");
        }

        if (!buffer.IsWritable || !buffer.MarkPublished())
        {
            throw new InvalidOperationException($"{buffer.Id} is not an unpublished allocation.");
        }

        try
        {
            await writer.SynchronizeAsync(cancellationToken).ConfigureAwait(false);
            await CallAsync(new Publish(buffer.Id, options.Consumers, options.Ttl?.Ticks ?? 0, options.Pinned), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            buffer.MarkUnpublished(); // still the client's: its dispose releases it (the node would otherwise hold it until the connection closes)
            throw;
        }

        buffer.EndSlabUse(); // the buffer no longer uses the slab mapping (its dispose ending it again is a no-op)
        return buffer.Id;
    }

    /// <summary>
    /// The data of <paramref name="id"/> on GPU <paramref name="device"/>, read-only: on the GPU that
    /// holds it, its pool memory mapped here (zero copy); on another GPU, a copy the node made once
    /// over the peer path; if it was evicted, restored first. Dispose the buffer when done.
    /// </summary>
    /// <param name="id">The data.</param>
    /// <param name="device">Where the consumer runs.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<TubeBuffer> GetAsync(TubeId id, int device = 0, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(device);
        var ok = await CallAsync(new Get(id, device), cancellationToken).ConfigureAwait(false);
        return await MapOrReleaseAsync(id, ok.Mapping, writable: false).ConfigureAwait(false);
    }

    /// <summary>Releases one lease this client holds on <paramref name="id"/> (a consumer is done).</summary>
    /// <param name="id">The data.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public Task ReleaseAsync(TubeId id, CancellationToken cancellationToken = default) => ReleaseLeaseAsync(id, cancellationToken);

    /// <summary>The GPU that holds <paramref name="id"/>, to place its consumer next to it.</summary>
    /// <param name="id">The data.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<int> WhereAsync(TubeId id, CancellationToken cancellationToken = default) =>
        (await CallAsync(new Where(id), cancellationToken).ConfigureAwait(false)).Device;

    /// <summary>Removes data now (pinned data is only removed this way); held leases keep it alive until released.</summary>
    /// <param name="id">The data.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public Task DeleteAsync(TubeId id, CancellationToken cancellationToken = default) =>
        CallAsync(new Delete(id), cancellationToken);

    /// <summary>Sends any request as it is (tests forge requests with it); the node's answer payload, or its error as a <see cref="TubeException"/>.</summary>
    internal Task<byte[]> CallRawAsync(FrameType type, PayloadWriter payload) => CallAsync(type, payload, CancellationToken.None);

    internal async Task ReleaseLeaseAsync(TubeId id, CancellationToken cancellationToken = default) =>
        await CallAsync(new Release(id), cancellationToken).ConfigureAwait(false);

    private async Task TryReleaseAsync(TubeId id)
    {
        try
        {
            await ReleaseLeaseAsync(id).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TubeException or TubeNodeUnavailableException)
        {
            // Nothing held, or the node is gone (and with it the lease).
        }
    }

    /// <summary>Maps an answer's mapping; when that fails, the lease the node granted for it is released, not left until the connection closes.</summary>
    private async Task<TubeBuffer> MapOrReleaseAsync(TubeId id, Mapping? mapping, bool writable)
    {
        try
        {
            return MapReply(id, mapping ?? throw new InvalidDataException($"The node sent no mapping for {id}."), writable);
        }
        catch
        {
            await TryReleaseAsync(id).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Maps (device, slab, generation, offset, length, handle) into a buffer: the slab is imported once and cached.</summary>
    private TubeBuffer MapReply(TubeId id, Mapping m, bool writable)
    {
        var (device, slab, generation, offset, length, handle) = m;
        var use = _mappings.Use((device, slab, generation), () =>
            _inProcessNode is { } node
                ? (node.PoolOf(device).SlabBuffer(slab, generation), false)
                : handle.Length > 0
                    ? (Gpus.Devices[device].Import(IpcMemoryHandle.ReadFrom(handle)), true)
                    : throw new TubeException(TubeError.Internal, $"The node sent no handle for slab {slab} of GPU {device}, which this client has not opened."));
        try
        {
            return new TubeBuffer(this, id, use.Slab.Slice(offset, length), use, writable);
        }
        catch
        {
            use.Dispose();
            throw;
        }
    }

    private void OnCloseSlab(byte[] payload)
    {
        var (device, slab, generation) = Payload.Read<CloseSlab>(payload);
        _mappings.CloseRequested((device, slab, generation));
    }

    /// <summary>Tells the node a slab is closed here (after the table unmapped it).</summary>
    private async Task SlabClosedAsync((int Device, int Slab, int Generation) key)
    {
        try
        {
            await CallAsync(new SlabClosed(key.Device, key.Slab, key.Generation), CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TubeException or TubeNodeUnavailableException)
        {
            // The node forgot it already, or is gone.
        }
    }

    /// <summary>One request and its typed answer.</summary>
    private async Task<TReply> CallAsync<TReply>(IRequest<TReply> request, CancellationToken cancellationToken)
        where TReply : IPayload<TReply>
    {
        var payload = new PayloadWriter();
        request.Write(payload);
        return Payload.Read<TReply>(await CallAsync(request.Type, payload, cancellationToken).ConfigureAwait(false));
    }

    private async Task<byte[]> CallAsync(FrameType type, PayloadWriter payload, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _dead) is { } dead)
        {
            throw Gone(dead); // a refusal that came before this call is still the refusal
        }

        uint requestId = Interlocked.Increment(ref _nextRequest);
        var pending = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[requestId] = pending;
        try
        {
            try
            {
                if (type == FrameType.Hello && _socket is { } socket)
                {
                    // The window travels with Hello as a descriptor (SCM_RIGHTS), before any other frame.
                    UnixRights.Send(socket, Frames.Encode(type, requestId, payload.Memory.Span), _window.Descriptor);
                }
                else
                {
                    await _writer.SendAsync(type, requestId, payload.Memory, cancellationToken).ConfigureAwait(false);
                }
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or ObjectDisposedException or SocketException)
            {
                // The node may have closed after telling why (access denied, bad version): let the
                // reader see that frame first, so the caller gets the reason, not a broken pipe.
                await Task.WhenAny(_readLoop, Task.Delay(_options.CallTimeout, CancellationToken.None)).ConfigureAwait(false);
                Fail(e);
            }

            return await pending.Task.WaitAsync(_options.CallTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException e)
        {
            throw new TubeNodeUnavailableException($"The node did not answer {type} within {_options.CallTimeout.TotalSeconds:0.#} s.", e);
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
                    OnCloseSlab(f.Payload);
                    continue;
                }

                if (f.RequestId == 0 && f.Type == FrameType.Error)
                {
                    error = ToException(f.Payload); // the node refused the whole connection
                    break;
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

    /// <summary>Closes the connection (the node releases everything this client held) and the window.</summary>
    public async ValueTask DisposeAsync()
    {
        Fail(new ObjectDisposedException(nameof(TubeClient)));

        await _writer.CompleteAsync().ConfigureAwait(false);
        await _readLoop.ConfigureAwait(false);
        await FrameWriter.Quietly(_reader.CompleteAsync()).ConfigureAwait(false);
        _mappings.DisposeAll();

        _window.Dispose();
        if (_ownsGpus)
        {
            Gpus.Dispose();
        }
    }
}
