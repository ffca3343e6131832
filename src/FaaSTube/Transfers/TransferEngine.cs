using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using FaaSTube.Devices;
using FaaSTube.Diagnostics;
using FaaSTube.Hosting;
using FaaSTube.Transfers.Routing;
using Microsoft.Extensions.Logging;

namespace FaaSTube.Transfers;

/// <summary>
/// Host &lt;-&gt; GPU transfers of one device near the link's ceiling, shared fairly by deadline:
/// every transfer is cut into chunks; pageable bytes go through a fixed pool of pinned staging slots
/// (copied by thread-pool workers, several at once) while earlier chunks are in DMA on several
/// streams; pinned host memory (a <see cref="PinnedBuffer"/>, a rented one, or a registered window)
/// goes straight to DMA. Each direction is a lane with its own <see cref="BandwidthPolicy"/>.
/// Cancellation stops at a chunk boundary: finished chunks stay, the rest of the destination is not
/// touched. A failed chunk fails its transfer with the underlying error.
/// </summary>
public sealed partial class TransferEngine : IHostLane, IAsyncDisposable
{
    private readonly GpuDevice _device;
    private readonly TransferEngineOptions _options;
    private readonly TransferMetrics _metrics;

    /// <summary>The options this engine runs with.</summary>
    internal TransferEngineOptions Options => _options;
    private readonly StagingPool _staging;
    private readonly PinnedBufferPool _rentals;
    private readonly TransferLane _h2d;
    private readonly TransferLane _d2h;
    private readonly long _start;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private long _nextId;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<long, (TransferJob Job, LaneDirection Direction)> _inFlight = new();
    private int _disposed;

    /// <summary>Creates the engine of <paramref name="device"/>. It opens nothing: its pinned staging is allocated by the first staged transfer, its lanes' streams and loops by their first transfer.</summary>
    /// <param name="device">The GPU.</param>
    /// <param name="options">Chunking, staging, scheduling; null for the defaults.</param>
    public TransferEngine(GpuDevice device, TransferEngineOptions? options = null)
        : this(device, options, router: null, FaaSTubeServices.Default)
    {
    }

    /// <summary>An engine with its clock and logger from the node's services (<c>src/FaaSTube/Hosting/FaaSTubeServices.cs</c>).</summary>
    /// <param name="device">The GPU.</param>
    /// <param name="options">Chunking, staging, scheduling; null for the defaults.</param>
    /// <param name="router">
    /// The machine's router, when host transfers of other GPUs may borrow this GPU's PCIe lane
    /// (<see cref="PathRouter.RouteFromHost"/>): the host-to-GPU lane then tells the router when it is
    /// busy (so it is not lent, and lent paths are revoked) and plans with what harvested paths leave.
    /// Null: the lanes plan with the whole link and report to no one (a standalone engine).
    /// </param>
    /// <param name="services">The logger factory, meter factory and clock.</param>
    internal TransferEngine(GpuDevice device, TransferEngineOptions? options, PathRouter? router, FaaSTubeServices services)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(services);
        _options = options ?? new TransferEngineOptions();
        _options.Validate();
        _device = device;
        Services = services;
        _time = services.TimeProvider;
        _logger = services.Logger<TransferEngine>();
        _metrics = TransferMetrics.For(services.MeterFactory);
        _start = _time.GetTimestamp();
        double capacity = _options.LinkBytesPerSecond ?? device.HostLinkBytesPerSecond;
        LinkBytesPerSecond = capacity;
        _staging = new StagingPool(device, _options.StagingBytes, _options.ChunkBytes);
        _rentals = new PinnedBufferPool(device);

        // Each lane keeps at most half the slots in flight, so every issued chunk finds a slot: a chunk
        // that waits for its turn on a stream or pipe never holds the slot the chunk before it needs.
        int inFlight = Math.Max(1, Math.Min(_options.MaxChunksInFlight, _staging.Count / 2));
        Router = router;
        _h2d = new TransferLane(LaneDirection.HostToDevice, device, _options, capacity, inFlight, Now, router);
        _d2h = new TransferLane(LaneDirection.DeviceToHost, device, _options, capacity, inFlight, Now);
        foreach (var lane in new[] { _h2d, _d2h })
        {
            lane.OversubscriptionChanged += (l, over, degraded) =>
            {
                LogOversubscribed(_logger, device.Ordinal, l.Direction, over, degraded.Count);
                Oversubscribed?.Invoke(this, new LaneOversubscribedEventArgs(l.Direction, over, degraded));
            };
            _metrics.Register(lane, device.Ordinal);
        }

        LogStarted(_logger, device.Ordinal, _staging.Count, _options.ChunkBytes, capacity);
    }

    /// <summary>The logger factory, meter factory and clock the engine runs with (its instruments are created through <see cref="FaaSTubeServices.MeterFactory"/>).</summary>
    internal FaaSTubeServices Services { get; }

    /// <summary>Raised when a lane's least rates stop (or start again) fitting in the link: transfers are being degraded by priority.</summary>
    public event EventHandler<LaneOversubscribedEventArgs>? Oversubscribed;

    /// <summary>The device.</summary>
    public GpuDevice Device => _device;

    /// <summary>The host link's bandwidth per direction the lanes plan with: the options' <see cref="TransferEngineOptions.LinkBytesPerSecond"/>, else the device's.</summary>
    internal double LinkBytesPerSecond { get; }

    /// <summary>The router the host-to-GPU lane reports to, if any.</summary>
    internal PathRouter? Router { get; }

    /// <summary>Staging slots in all.</summary>
    public int StagingSlots => _staging.Count;

    /// <summary>Staging slots not in use now (all of them when no transfer is running: the pool is whole).</summary>
    public int StagingSlotsAvailable => _staging.Available;

    /// <summary>Whether the pinned staging exists yet (the first staged transfer allocates it).</summary>
    internal bool StagingAllocated => _staging.IsAllocated;

    /// <summary>Pins the staging now (about 1.3 ms per MiB on CUDA) rather than in the first staged transfer: the node does it as it starts, so no request pays it.</summary>
    internal void PinStaging() => _staging.EnsureAllocated();

    /// <summary>
    /// Rents pinned host memory: write the data into it and transfer it with no staging copy (the
    /// fastest path from the host). Dispose the rental to reuse the memory.
    /// </summary>
    /// <param name="bytes">Bytes needed (1 to 1 GiB).</param>
    public PinnedRental RentPinned(int bytes)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bytes, 1 << 30);
        return _rentals.Rent(bytes);
    }

    /// <summary>Transfers waiting or running in a direction.</summary>
    /// <param name="direction">The lane.</param>
    public int QueueDepth(LaneDirection direction) => Lane(direction).QueueDepth;

    /// <summary>Copies host memory to the start of <paramref name="destination"/>.</summary>
    /// <param name="source">Host bytes; pinned memory skips staging.</param>
    /// <param name="destination">At least as long as the source.</param>
    /// <param name="request">Tenant, SLO, priority, progress; null for the defaults.</param>
    /// <param name="cancellationToken">Stops at a chunk boundary.</param>
    public ValueTask<TransferResult> ToDeviceAsync(ReadOnlyMemory<byte> source, DeviceMemory destination, TransferRequest? request = null, CancellationToken cancellationToken = default) =>
        StartToDevice(new MemorySource(source), source.Length, destination, request, cancellationToken);

    /// <summary>Copies a byte sequence (e.g. from a pipe) to the start of <paramref name="destination"/>.</summary>
    /// <param name="source">Host bytes.</param>
    /// <param name="destination">At least as long as the source.</param>
    /// <param name="request">Tenant, SLO, priority, progress.</param>
    /// <param name="cancellationToken">Stops at a chunk boundary.</param>
    public ValueTask<TransferResult> ToDeviceAsync(ReadOnlySequence<byte> source, DeviceMemory destination, TransferRequest? request = null, CancellationToken cancellationToken = default) =>
        StartToDevice(new SequenceSource(source), source.Length, destination, request, cancellationToken);

    /// <summary>Copies typed host data to the start of <paramref name="destination"/>.</summary>
    /// <typeparam name="T">An unmanaged element type.</typeparam>
    /// <param name="source">Host elements.</param>
    /// <param name="destination">At least as long as the source's bytes.</param>
    /// <param name="request">Tenant, SLO, priority, progress.</param>
    /// <param name="cancellationToken">Stops at a chunk boundary.</param>
    public ValueTask<TransferResult> ToDeviceAsync<T>(ReadOnlyMemory<T> source, DeviceMemory destination, TransferRequest? request = null, CancellationToken cancellationToken = default)
        where T : unmanaged =>
        ToDeviceAsync(new ByteMemoryManager<T>(System.Runtime.InteropServices.MemoryMarshal.AsMemory(source)).Memory, destination, request, cancellationToken);

    /// <summary>Reads exactly <paramref name="destination"/>'s length from a stream onto the GPU.</summary>
    /// <param name="source">A readable stream with at least that many bytes left.</param>
    /// <param name="destination">Device range to fill.</param>
    /// <param name="request">Tenant, SLO, priority, progress.</param>
    /// <param name="cancellationToken">Stops at a chunk boundary.</param>
    /// <exception cref="EndOfStreamException">The stream ended first (the chunks before stay written).</exception>
    public ValueTask<TransferResult> ToDeviceAsync(Stream source, DeviceMemory destination, TransferRequest? request = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (!source.CanRead)
        {
            throw new ArgumentException("The stream is not readable (closed, or write-only).", nameof(source));
        }

        return StartToDevice(new StreamSource(source), destination.Length, destination, request, cancellationToken);
    }

    /// <summary>Reads exactly <paramref name="destination"/>'s length from a pipe onto the GPU.</summary>
    /// <param name="source">The pipe's reader.</param>
    /// <param name="destination">Device range to fill.</param>
    /// <param name="request">Tenant, SLO, priority, progress.</param>
    /// <param name="cancellationToken">Stops at a chunk boundary.</param>
    public ValueTask<TransferResult> ToDeviceAsync(PipeReader source, DeviceMemory destination, TransferRequest? request = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        return StartToDevice(new PipeReaderSource(source), destination.Length, destination, request, cancellationToken);
    }

    /// <summary>Copies device memory to the start of <paramref name="destination"/>.</summary>
    /// <param name="source">Device range.</param>
    /// <param name="destination">Host bytes, at least as long; pinned memory skips staging.</param>
    /// <param name="request">Tenant, SLO, priority, progress.</param>
    /// <param name="cancellationToken">Stops at a chunk boundary.</param>
    public ValueTask<TransferResult> ToHostAsync(DeviceMemory source, Memory<byte> destination, TransferRequest? request = null, CancellationToken cancellationToken = default)
    {
        if (destination.Length < source.Length)
        {
            throw new ArgumentException($"The destination has {destination.Length} bytes; the source has {source.Length}.", nameof(destination));
        }

        return StartToHost(source, new MemorySink(destination[..(int)source.Length]), request, cancellationToken);
    }

    /// <summary>Copies device memory into typed host memory.</summary>
    /// <typeparam name="T">An unmanaged element type.</typeparam>
    /// <param name="source">Device range.</param>
    /// <param name="destination">Host elements, at least as many bytes.</param>
    /// <param name="request">Tenant, SLO, priority, progress.</param>
    /// <param name="cancellationToken">Stops at a chunk boundary.</param>
    public ValueTask<TransferResult> ToHostAsync<T>(DeviceMemory source, Memory<T> destination, TransferRequest? request = null, CancellationToken cancellationToken = default)
        where T : unmanaged =>
        ToHostAsync(source, new ByteMemoryManager<T>(destination).Memory, request, cancellationToken);

    /// <summary>Writes device memory to a stream, in order.</summary>
    /// <param name="source">Device range.</param>
    /// <param name="destination">A writable stream.</param>
    /// <param name="request">Tenant, SLO, priority, progress.</param>
    /// <param name="cancellationToken">Stops at a chunk boundary.</param>
    public ValueTask<TransferResult> ToHostAsync(DeviceMemory source, Stream destination, TransferRequest? request = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (!destination.CanWrite)
        {
            throw new ArgumentException("The stream is not writable (closed, or read-only).", nameof(destination));
        }

        return StartToHost(source, new StreamSink(destination), request, cancellationToken);
    }

    /// <summary>Writes device memory to a pipe, in order.</summary>
    /// <param name="source">Device range.</param>
    /// <param name="destination">The pipe's writer.</param>
    /// <param name="request">Tenant, SLO, priority, progress.</param>
    /// <param name="cancellationToken">Stops at a chunk boundary.</param>
    public ValueTask<TransferResult> ToHostAsync(DeviceMemory source, PipeWriter destination, TransferRequest? request = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(destination);
        return StartToHost(source, new PipeWriterSink(destination), request, cancellationToken);
    }

    private ValueTask<TransferResult> StartToDevice(HostSource source, long length, DeviceMemory destination, TransferRequest? request, CancellationToken cancellationToken)
    {
        CheckDevice(destination, nameof(destination));
        if (length > destination.Length)
        {
            throw new ArgumentException($"The destination has {destination.Length} bytes; the source has {length}.", nameof(destination));
        }

        var pinned = source.Pinned;
        var lane = _h2d;
        return Submit(lane, length, destination.Buffer, request, source.IsSequential, staged: pinned is null, cancellationToken, async (offset, size, turns) =>
        {
            var target = destination.Slice(offset, size);
            if (pinned is { } direct)
            {
                await turns.WaitDmaAsync().ConfigureAwait(false);
                await DmaAsync(turns, lane.NextStream().CopyAsync(direct.Slice((int)offset, size), target)).ConfigureAwait(false);
                return;
            }

            var slot = await _staging.RentAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                await turns.WaitSourceAsync().ConfigureAwait(false);
                await source.ReadAsync(offset, slot[..size], cancellationToken).ConfigureAwait(false);
                turns.PassSource();
                await turns.WaitDmaAsync().ConfigureAwait(false);
                await DmaAsync(turns, lane.NextStream().CopyAsync(slot[..size], target)).ConfigureAwait(false);
            }
            finally
            {
                _staging.Return(slot);
            }
        });
    }

    private ValueTask<TransferResult> StartToHost(DeviceMemory source, HostSink sink, TransferRequest? request, CancellationToken cancellationToken)
    {
        CheckDevice(source, nameof(source));
        var pinned = sink.Pinned;
        var lane = _d2h;
        return Submit(lane, source.Length, source.Buffer, request, sink.IsSequential, staged: pinned is null, cancellationToken, async (offset, size, turns) =>
        {
            var from = source.Slice(offset, size);
            await turns.WaitDmaAsync().ConfigureAwait(false);
            if (pinned is { } direct)
            {
                await DmaAsync(turns, lane.NextStream().CopyAsync(from, direct.Slice((int)offset, size))).ConfigureAwait(false);
                return;
            }

            var slot = await _staging.RentAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                await DmaAsync(turns, lane.NextStream().CopyAsync(from, slot[..size])).ConfigureAwait(false);
                await turns.WaitSourceAsync().ConfigureAwait(false);
                await sink.WriteAsync(offset, slot[..size], cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _staging.Return(slot);
            }
        });
    }

    /// <summary>The copy has been submitted by the time its ValueTask exists: the next chunk may submit its own; then wait for this one.</summary>
    private static async Task DmaAsync(ChunkTurns turns, ValueTask submitted)
    {
        turns.PassDma();
        await submitted.ConfigureAwait(false);
    }

    /// <summary>Validates, keeps the device buffer alive for the transfer, and hands the job to its lane.</summary>
    private ValueTask<TransferResult> Submit(
        TransferLane lane, long length, DeviceBuffer buffer, TransferRequest? request, bool sequential, bool staged,
        CancellationToken cancellationToken, Func<long, int, ChunkTurns, Task> moveChunk)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        request ??= Default;
        request.Validate();
        cancellationToken.ThrowIfCancellationRequested();
        if (length == 0)
        {
            return ValueTask.FromResult(new TransferResult(0, TimeSpan.Zero, request.Slo is null ? null : true, false, false));
        }

        buffer.AddRef(); // throws ObjectDisposedException for a disposed buffer
        var job = new TransferJob(Interlocked.Increment(ref _nextId), length, request, Now(), sequential, staged, moveChunk, cancellationToken);
        _inFlight[job.Id] = (job, lane.Direction);
        try
        {
            lane.Submit(job);
        }
        catch
        {
            _inFlight.TryRemove(job.Id, out _);
            buffer.Release();
            throw;
        }

        return new ValueTask<TransferResult>(Finish(job, lane, buffer));
    }

    private static readonly TransferRequest Default = new();

    /// <summary>Waits for the job, recording its span (internal work, under the request that asked for it) and its metrics.</summary>
    private async Task<TransferResult> Finish(TransferJob job, TransferLane lane, DeviceBuffer buffer)
    {
        // The tenant is a client's workflow name: unbounded, so on the span only, never a metric's attribute
        // (a client naming a new workflow per connection would otherwise add series without end).
        var tags = new TagList
        {
            { TelemetryTags.GpuIndex, buffer.Device.Ordinal },
            { TelemetryTags.TransferDirection, TransferMetrics.Direction(lane.Direction) },
        };
        using var span = Telemetry.ActivitySource.StartActivity("faastube.transfer", ActivityKind.Internal, default(ActivityContext), tags);
        span?.SetTag(TelemetryTags.Tenant, job.Request.Tenant);
        span?.SetTag(TelemetryTags.TransferSize, job.Length);
        try
        {
            var result = await job.Completion.ConfigureAwait(false);
            _metrics.Io.Add(result.Bytes, tags);
            _metrics.Duration.Record(result.Elapsed.TotalSeconds, tags);
            if (result.DeadlineMet == false)
            {
                _metrics.DeadlineMisses.Add(1, tags);
            }

            return result;
        }
        catch (Exception e)
        {
            Spans.Fail(span, e);
            throw;
        }
        finally
        {
            _inFlight.TryRemove(job.Id, out _);
            buffer.Release();
        }
    }

    /// <summary>Transfers submitted and not finished now: at most <paramref name="limit"/>, oldest first, and how many there are.</summary>
    internal (int Total, List<(TransferJob Job, LaneDirection Direction)> Listed) InFlight(int limit)
    {
        var all = _inFlight.Values.ToList(); // bounded: lanes queue at most what their callers' request slots allow
        return (all.Count, all.OrderBy(t => t.Job.Submitted).Take(limit).ToList());
    }

    /// <summary>The engine's clock: when a transfer was submitted is on it.</summary>
    internal TimeSpan Elapsed => Now();

    private TransferLane Lane(LaneDirection direction) => direction == LaneDirection.HostToDevice ? _h2d : _d2h;

    private TimeSpan Now() => _time.GetElapsedTime(_start);

    private void CheckDevice(DeviceMemory memory, string name)
    {
        if (memory.Buffer is null)
        {
            throw new ArgumentNullException(name);
        }

        if (memory.Device != _device)
        {
            throw new ArgumentException($"{memory.Buffer} is on {memory.Device}; this engine serves {_device}.", name);
        }
    }

    /// <summary>A host hop of a routed copy, scheduled like any transfer of this engine (default request).</summary>
    async ValueTask IHostLane.CopyToDeviceAsync(ReadOnlyMemory<byte> source, DeviceMemory destination, CancellationToken cancellationToken) =>
        await ToDeviceAsync(source, destination, null, cancellationToken).ConfigureAwait(false);

    /// <summary>A host hop of a routed copy, scheduled like any transfer of this engine (default request).</summary>
    async ValueTask IHostLane.CopyToHostAsync(DeviceMemory source, Memory<byte> destination, CancellationToken cancellationToken) =>
        await ToHostAsync(source, destination, null, cancellationToken).ConfigureAwait(false);

    /// <summary>Stops both lanes (transfers not finished fail with <see cref="ObjectDisposedException"/>), awaiting their loops, then frees the staging memory.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        foreach (var lane in new[] { _h2d, _d2h })
        {
            _metrics.Unregister(lane);
            await lane.DisposeAsync().ConfigureAwait(false);
        }

        FreeStaging();
    }

    private void FreeStaging()
    {
        _staging.Dispose();
        _rentals.Dispose();
        LogStopped(_logger, _device.Ordinal);
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Transfer engine of GPU {Device} started: {Slots} staging slots of {ChunkBytes} bytes, {LinkBytesPerSecond} B/s per direction")]
    private static partial void LogStarted(ILogger logger, int device, int slots, int chunkBytes, double linkBytesPerSecond);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "Transfer lane {Direction} of GPU {Device} oversubscribed: {Oversubscribed} ({Degraded} transfers below their least rate)")]
    private static partial void LogOversubscribed(ILogger logger, int device, LaneDirection direction, bool oversubscribed, int degraded);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "Transfer engine of GPU {Device} stopped")]
    private static partial void LogStopped(ILogger logger, int device);
}

/// <summary>A lane became oversubscribed (its transfers' least rates exceed the link) or stopped being so.</summary>
/// <param name="Direction">The lane.</param>
/// <param name="Oversubscribed">True when it started, false when it ended.</param>
/// <param name="Degraded">Transfers getting less than their least rate.</param>
public sealed record LaneOversubscribedEventArgs(LaneDirection Direction, bool Oversubscribed, IReadOnlyList<long> Degraded);
