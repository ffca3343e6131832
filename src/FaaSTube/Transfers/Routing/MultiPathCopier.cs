using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Diagnostics;
using FaaSTube.Memory;

namespace FaaSTube.Transfers.Routing;

/// <summary>
/// Executes routed copies: the bytes are split over the reserved paths in proportion to their
/// bandwidth (so all paths finish together), and each path moves its share in chunks, relayed
/// through the intermediate GPUs' (or the host's) staging buffers with two chunks in flight per
/// path, so one hop of a chunk overlaps the next hop of the one before. A path's reservation is
/// released as soon as its chunks are done; all of it on failure or cancellation.
/// </summary>
internal sealed class MultiPathCopier : IDisposable
{
    private readonly GpuSystem _gpus;
    private readonly int _chunkBytes;
    private readonly IReadOnlyList<IRelayBufferSource?>? _relays;
    private readonly IReadOnlyList<IHostLane?>? _hostLanes;
    private readonly ConcurrentBag<GpuStream>[] _idleStreams;

    /// <summary>Creates a copier over the GPUs of <paramref name="gpus"/>.</summary>
    /// <param name="gpus">The GPUs (their topology is the router's).</param>
    /// <param name="router">The router to reserve paths with; null for a new one over <paramref name="gpus"/>'s topology.</param>
    /// <param name="chunkBytes">Chunk size on the widest path (narrower paths use proportionally smaller chunks; default 4 MiB).</param>
    /// <param name="relays">Per GPU, where relays take their staging buffers (the node's: <c>PoolRelayBuffers</c> over its pools; null: plain device allocations).</param>
    /// <param name="hostLanes">Per GPU, the lane that schedules host hops (D2H and H2D of the host fallback and of harvested paths; the node's: its <c>TransferEngine</c>s; null: plain stream copies).</param>
    public MultiPathCopier(GpuSystem gpus, PathRouter? router = null, int chunkBytes = 4 << 20,
        IReadOnlyList<IRelayBufferSource?>? relays = null, IReadOnlyList<IHostLane?>? hostLanes = null)
    {
        ArgumentNullException.ThrowIfNull(gpus);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkBytes, 4096);
        _gpus = gpus;
        Router = router ?? new PathRouter(gpus.Topology);
        _chunkBytes = chunkBytes;
        _relays = relays;
        _hostLanes = hostLanes;
        _idleStreams = gpus.Devices.Select(_ => new ConcurrentBag<GpuStream>()).ToArray();
    }

    /// <summary>A stream on <paramref name="gpu"/>, reused across copies (creating one costs a driver call).</summary>
    private GpuStream RentStream(int gpu) => _idleStreams[gpu].TryTake(out var stream) ? stream : _gpus.Devices[gpu].CreateStream();

    private void ReturnStream(GpuStream stream) => _idleStreams[stream.Device.Ordinal].Add(stream);

    /// <summary>Disposes the streams kept for reuse (copies still running keep theirs until they end).</summary>
    public void Dispose()
    {
        foreach (var bag in _idleStreams)
        {
            while (bag.TryTake(out var stream))
            {
                stream.Dispose();
            }
        }
    }

    /// <summary>The router whose reservations the copies use.</summary>
    public PathRouter Router { get; }

    /// <summary>Copies between two GPUs (or within one) over the routed paths.</summary>
    /// <param name="source">Device memory on one GPU.</param>
    /// <param name="destination">Device memory of the same length on the same or another GPU.</param>
    /// <param name="cancellationToken">Stops between chunks.</param>
    /// <returns>The paths used, with their bandwidth.</returns>
    public async Task<IReadOnlyList<RoutePath>> CopyAsync(DeviceMemory source, DeviceMemory destination, CancellationToken cancellationToken = default)
    {
        CheckLengths(source.Length, destination.Length);
        using var span = Span("faastube.peer_copy", source.Device.Ordinal, destination.Device.Ordinal, source.Length);
        using var flow = Router.Route(source.Device.Ordinal, destination.Device.Ordinal);
        var paths = flow.Paths;
        await RunPathsAsync(flow, paths, source.Length, (path, offset, length, slot, staging, timeline) =>
            MoveChunkAsync(path, source.Slice(offset, length), null, destination.Slice(offset, length), slot, staging, timeline), cancellationToken).ConfigureAwait(false);
        return paths;
    }

    /// <summary>
    /// Copies host memory to a GPU over its own PCIe lane and, where idle, the lanes of NVLink
    /// neighbours behind other PCIe switches (host -&gt; neighbour -&gt; GPU).
    /// </summary>
    /// <param name="source">Host bytes (pinned memory is fastest).</param>
    /// <param name="destination">Device memory of the same length.</param>
    /// <param name="cancellationToken">Stops between chunks.</param>
    /// <returns>The paths used.</returns>
    public async Task<IReadOnlyList<RoutePath>> FromHostAsync(ReadOnlyMemory<byte> source, DeviceMemory destination, CancellationToken cancellationToken = default)
    {
        CheckLengths(source.Length, destination.Length);
        using var span = Span("faastube.routed_host_copy", null, destination.Device.Ordinal, source.Length);
        using var flow = Router.RouteFromHost(destination.Device.Ordinal);
        var paths = flow.Paths;
        await RunPathsAsync(flow, paths, source.Length, (path, offset, length, slot, staging, timeline) =>
            MoveChunkAsync(path, default, source.Slice((int)offset, length), destination.Slice(offset, length), slot, staging, timeline), cancellationToken).ConfigureAwait(false);
        return paths;
    }

    /// <summary>A routed copy's span: internal work under the request that asked for it (an exception it ends with is left to the caller's span).</summary>
    private static Activity? Span(string name, int? source, int destination, long bytes)
    {
        var span = Telemetry.ActivitySource.StartActivity(name, ActivityKind.Internal);
        if (span is { IsAllDataRequested: true })
        {
            span.SetTag(TelemetryTags.GpuIndex, destination);
            span.SetTag(TelemetryTags.SourceGpuIndex, source);
            span.SetTag(TelemetryTags.TransferSize, bytes);
        }

        return span;
    }

    private delegate Task ChunkMover(RoutePath path, long offset, int length, int slot, Staging staging, StrongBox<TimeSpan> timeline);

    /// <summary>
    /// Splits the bytes over the paths in proportion to their reserved bandwidth (so they finish
    /// together) and runs each path's share in chunks sized to its bandwidth. A harvested path whose
    /// lane is claimed back stops and leaves the rest of its share to the first path (the GPU's own
    /// lane, or the best direct path), which never stops, so every byte is covered.
    /// </summary>
    private async Task RunPathsAsync(RouteReservation flow, IReadOnlyList<RoutePath> paths, long length, ChunkMover move, CancellationToken cancellationToken)
    {
        if (length == 0)
        {
            return;
        }

        var caller = VirtualTimeline.Fork(_gpus.Devices[0]); // on the simulated GPU: paths overlap in virtual time
        var shares = new Shares(paths.Select(p => p.BytesPerSecond).ToArray(), length);
        double widest = paths.Max(p => p.BytesPerSecond);
        int ChunkFor(RoutePath path) => paths.Count == 1 && path.Hops <= 1
            ? (int)Math.Min(length, 1L << 30) // one direct path: no relays to pipeline, the stream chunks the copy itself
            : (int)Math.Max(64 << 10, (long)(_chunkBytes * (widest > 0 && path.BytesPerSecond > 0 ? path.BytesPerSecond / widest : 1)) & ~4095L);

        var others = paths.Skip(1).Select((path, i) => RunPathAsync(flow, path, shares, i + 1, ChunkFor(path), move, Task.CompletedTask, cancellationToken)).ToArray();
        var primary = RunPathAsync(flow, paths[0], shares, 0, ChunkFor(paths[0]), move, Task.WhenAll(others), cancellationToken);
        await Task.WhenAll(others.Append(primary)).ConfigureAwait(false);
        VirtualTimeline.Join(caller);
    }

    // othersDone: for the first path, the other paths; once its own share is done it waits for them and takes what revoked paths left.
    private async Task RunPathAsync(RouteReservation flow, RoutePath path, Shares shares, int index, int chunk, ChunkMover move, Task othersDone, CancellationToken cancellationToken)
    {
        var copy = VirtualTimeline.Fork();
        var start = VirtualTimeline.Box!.Value;
        var slotTimelines = new[] { new StrongBox<TimeSpan>(start), new StrongBox<TimeSpan>(start) }; // a slot is free when its last chunk is done
        using var staging = await Staging.CreateAsync(this, path, chunk, cancellationToken).ConfigureAwait(false);
        var inFlight = new Task[] { Task.CompletedTask, Task.CompletedTask };
        bool primary = index == 0;
        try
        {
            for (int n = 0; ; n++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (!primary && flow.IsRevoked(path.Nodes))
                {
                    shares.Spill(index); // the lane's owner needs it: the first path takes the rest
                    break;
                }

                int slot = n % 2;
                await inFlight[slot].ConfigureAwait(false); // this slot's staging buffers are free again
                if (!shares.TryTake(index, chunk, out long offset, out int length))
                {
                    if (!primary)
                    {
                        break;
                    }

                    await othersDone.ConfigureAwait(false);
                    if (!shares.TryTakeLeftover(chunk, out offset, out length))
                    {
                        break;
                    }
                }

                inFlight[slot] = move(path, offset, length, slot, staging, slotTimelines[slot]);
            }
        }
        finally
        {
            try
            {
                await Task.WhenAll(inFlight).ConfigureAwait(false);
            }
            finally
            {
                flow.ReleasePath(path.Nodes);
                foreach (var slotTimeline in slotTimelines)
                {
                    VirtualTimeline.Reach(VirtualTimeline.Box!, slotTimeline.Value);
                }

                VirtualTimeline.Join(copy);
            }
        }
    }

    /// <summary>Each path's range of the copy, and what revoked paths left for the first one.</summary>
    private sealed class Shares
    {
        private readonly long[] _next;
        private readonly long[] _end;
        private readonly ConcurrentQueue<(long Offset, long Length)> _leftovers = new();

        public Shares(double[] rates, long length)
        {
            int n = rates.Length;
            _next = new long[n];
            _end = new long[n];
            double total = rates.Sum();
            long cursor = 0;
            for (int i = 1; i < n; i++) // the first path gets what rounding leaves
            {
                long share = total > 0 ? (long)(length * (rates[i] / total)) & ~4095L : 0;
                _next[i] = cursor;
                _end[i] = cursor += share;
            }

            _next[0] = cursor;
            _end[0] = length;
        }

        public bool TryTake(int path, int chunk, out long offset, out int length)
        {
            offset = _next[path];
            length = (int)Math.Min(chunk, _end[path] - offset);
            _next[path] += length;
            return length > 0;
        }

        public void Spill(int path)
        {
            if (_end[path] > _next[path])
            {
                _leftovers.Enqueue((_next[path], _end[path] - _next[path]));
                _next[path] = _end[path];
            }
        }

        public bool TryTakeLeftover(int chunk, out long offset, out int length)
        {
            while (_leftovers.TryDequeue(out var range))
            {
                offset = range.Offset;
                length = (int)Math.Min(chunk, range.Length);
                if (range.Length > length)
                {
                    _leftovers.Enqueue((range.Offset + length, range.Length - length));
                }

                return true;
            }

            offset = 0;
            length = 0;
            return false;
        }
    }

    /// <summary>One chunk along one path: hop by hop through the relays' staging slot <paramref name="slot"/>.</summary>
    private async Task MoveChunkAsync(RoutePath path, DeviceMemory source, ReadOnlyMemory<byte> hostSource, DeviceMemory destination, int slot, Staging staging, StrongBox<TimeSpan> slotTimeline)
    {
        VirtualTimeline.Enter(slotTimeline); // simulated GPU: this chunk follows the last one in its slot, not the other slot's
        await MoveHopsAsync(path, source, hostSource, destination, slot, staging).ConfigureAwait(false);
    }

    private async Task MoveHopsAsync(RoutePath path, DeviceMemory source, ReadOnlyMemory<byte> hostSource, DeviceMemory destination, int slot, Staging staging)
    {
        var nodes = path.Nodes;
        if (nodes.Count == 1)
        {
            await staging.Stream(0).CopyAsync(source, destination).ConfigureAwait(false);
            return;
        }

        // Where the chunk is now: host memory or device memory.
        DeviceMemory device = source;
        ReadOnlyMemory<byte> host = hostSource;
        bool onHost = nodes[0] == PathRouter.Host;
        for (int hop = 1; hop < nodes.Count; hop++)
        {
            int next = nodes[hop];
            bool last = hop == nodes.Count - 1;
            if (next == PathRouter.Host)
            {
                var target = staging.HostSlot(slot)[..(int)device.Length];
                if (_hostLanes?[nodes[hop - 1]] is { } d2h)
                {
                    await d2h.CopyToHostAsync(device, target).ConfigureAwait(false); // under that GPU's scheduler
                }
                else
                {
                    await staging.Stream(hop).CopyAsync(device, target).ConfigureAwait(false);
                }

                host = target;
                onHost = true;
                continue;
            }

            var into = last ? destination : staging.DeviceSlot(hop, slot).Slice(0, onHost ? host.Length : device.Length);
            if (onHost && _hostLanes?[next] is { } h2d)
            {
                await h2d.CopyToDeviceAsync(host, into).ConfigureAwait(false); // under that GPU's scheduler
            }
            else if (onHost)
            {
                await staging.Stream(hop).CopyAsync(host, into).ConfigureAwait(false);
            }
            else
            {
                await staging.Stream(hop).CopyAsync(device, into).ConfigureAwait(false);
            }

            device = into;
            onHost = false;
        }
    }

    private static void CheckLengths(long source, long destination)
    {
        if (source != destination)
        {
            throw new ArgumentException($"The source has {source} bytes and the destination {destination}.", nameof(destination));
        }
    }

    /// <summary>
    /// What one path needs while it runs: a stream per hop (on the GPU that receives, or the GPU that
    /// sends to the host), so the hops of different chunks and paths overlap, and two chunk-sized
    /// staging buffers on each relay (GPU memory, or pinned host memory for a host relay).
    /// </summary>
    private sealed class Staging : IDisposable
    {
        private readonly Dictionary<(int Hop, int Slot), DeviceMemory> _device = [];
        private readonly List<IDisposable> _owned = [];
        private readonly PinnedBuffer?[] _host = new PinnedBuffer?[2];
        private readonly GpuStream[] _streams;

        private readonly MultiPathCopier _owner;

        private Staging(MultiPathCopier owner, RoutePath path)
        {
            _owner = owner;
            var nodes = path.Nodes;
            _streams = new GpuStream[Math.Max(1, nodes.Count)];
            for (int hop = 0; hop < _streams.Length; hop++)
            {
                int runsOn = nodes.Count == 1 ? nodes[0] : hop == 0 ? -1 : nodes[hop] != PathRouter.Host ? nodes[hop] : nodes[hop - 1];
                if (runsOn >= 0)
                {
                    _streams[hop] = owner.RentStream(runsOn);
                }
            }
        }

        /// <summary>Streams, and two staging slots per relay: from the relay GPU's <see cref="IRelayBufferSource"/> when there is one (the node's pool: held, so not evicted).</summary>
        public static async Task<Staging> CreateAsync(MultiPathCopier owner, RoutePath path, int chunk, CancellationToken cancellationToken)
        {
            var staging = new Staging(owner, path);
            try
            {
                for (int hop = 1; hop < path.Nodes.Count - 1; hop++)
                {
                    int node = path.Nodes[hop];
                    for (int slot = 0; slot < 2; slot++)
                    {
                        if (node == PathRouter.Host)
                        {
                            staging._host[slot] = owner._gpus.Devices[path.Nodes[^1]].AllocatePinned(chunk);
                            staging._owned.Add(staging._host[slot]!);
                        }
                        else if (owner._relays?[node] is { } relays)
                        {
                            var relay = await relays.RentAsync(chunk, cancellationToken).ConfigureAwait(false);
                            staging._owned.Add(relay);
                            staging._device[(hop, slot)] = relay.Memory.Slice(0, chunk);
                        }
                        else
                        {
                            var buffer = owner._gpus.Devices[node].Allocate(chunk);
                            staging._device[(hop, slot)] = buffer;
                            staging._owned.Add(buffer);
                        }
                    }
                }

                return staging;
            }
            catch
            {
                staging.Dispose();
                throw;
            }
        }

        public GpuStream Stream(int hop) => _streams[hop];

        public DeviceMemory DeviceSlot(int hop, int slot) => _device[(hop, slot)];

        public Memory<byte> HostSlot(int slot) => _host[slot]!.Memory;

        public void Dispose()
        {
            foreach (var owned in _owned)
            {
                owned.Dispose();
            }

            foreach (var stream in _streams)
            {
                if (stream is not null)
                {
                    _owner.ReturnStream(stream);
                }
            }
        }
    }
}
