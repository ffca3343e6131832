using System.Diagnostics;
using System.IO.Pipelines;
using FaaSTube.Channels.Protocol;
using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Memory;

namespace FaaSTube.Channels;

/// <summary>
/// One client connection on the node: reads frames, runs each request concurrently (request ids
/// let many calls be in flight), answers each with Ok or Error, and tracks what the client holds:
/// leases with open uses (so held data is never evicted under it), opened slabs, and its window.
/// Every descriptor it sends is made here from the pool's tables; nothing a client sends is trusted.
/// </summary>
internal sealed class NodeSession(TubeNode node, long id, PipeReader reader, PipeWriter writer, int pid, uint uid, bool inProcess, IDisposable? transport)
{
    private readonly FrameWriter _writer = new(writer, transport);
    private readonly Lock _sync = new();
    private readonly Dictionary<TubeId, Stack<(PoolBlock Block, BlockUse Use)>> _held = [];
    private readonly HashSet<(int Device, int Slab, int Generation)> _opened = [];
    private SharedMemoryFile? _windowFile;
    private PinnedBuffer? _window;
    private string _workflow = "";
    private string _function = "";

    public long Id { get; } = id;

    public int Pid { get; } = pid;

    public async Task RunAsync(bool denied, CancellationToken stop)
    {
        try
        {
            if (denied)
            {
                await SendErrorAsync(0, TubeError.AccessDenied, $"User {uid} may not use this node.").ConfigureAwait(false);
                return;
            }

            bool greeted = false;
            while (!stop.IsCancellationRequested)
            {
                (FrameType Type, uint RequestId, byte[] Payload)? frame;
                try
                {
                    frame = await Frames.ReadAsync(reader, node.Options.MaxFrameBytes, stop).ConfigureAwait(false);
                }
                catch (InvalidDataException e)
                {
                    await SendErrorAsync(0, TubeError.FrameTooLarge, e.Message).ConfigureAwait(false);
                    return; // the byte stream cannot be resynchronised
                }

                if (frame is not { } f)
                {
                    return; // the client closed
                }

                if (!greeted)
                {
                    greeted = await HelloAsync(f.Type, f.RequestId, f.Payload).ConfigureAwait(false);
                    if (!greeted)
                    {
                        return;
                    }

                    continue;
                }

                _ = HandleAsync(f.Type, f.RequestId, f.Payload);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // The connection broke or the node is stopping.
        }
        finally
        {
            await CloseAsync().ConfigureAwait(false);
        }
    }

    private async Task<bool> HelloAsync(FrameType type, uint requestId, byte[] payload)
    {
        try
        {
            if (type != FrameType.Hello)
            {
                throw new TubeException(TubeError.BadRequest, "The first frame must be Hello.");
            }

            var r = new PayloadReader(payload);
            ushort version = r.U16();
            if (version != Frames.Version)
            {
                throw new TubeException(TubeError.VersionMismatch, $"The node speaks protocol {Frames.Version}; the client {version}.");
            }

            _workflow = r.Str();
            _function = r.Str();
            string windowName = r.Str();
            long windowBytes = r.I64();
            if (string.IsNullOrEmpty(_workflow))
            {
                throw new TubeException(TubeError.BadRequest, "A client must name its workflow.");
            }

            OpenWindow(windowName, windowBytes);
            var ok = new PayloadWriter().U16(Frames.Version).I64(Id).I32(node.Gpus.Devices.Count).U8((byte)node.Gpus.Backend);
            await SendAsync(FrameType.Ok, requestId, ok.Memory).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is TubeException or InvalidDataException or ArgumentException or IOException)
        {
            var error = e is TubeException t ? t.Error : TubeError.BadRequest;
            await SendErrorAsync(requestId, error, e is TubeException te ? te.Reason : e.Message).ConfigureAwait(false);
            return false;
        }
    }

    /// <summary>Maps and registers (pins) the client's shared-memory window, once for the whole session.</summary>
    private void OpenWindow(string name, long bytes)
    {
        if (bytes <= 0 || bytes > int.MaxValue || !name.StartsWith("faastube-win.", StringComparison.Ordinal) || name.Contains('/') || name.Contains(".."))
        {
            throw new TubeException(TubeError.BadRequest, "The window must be a faastube-win.* file in shared memory of 1 byte to 2 GiB.");
        }

        _windowFile = SharedMemoryFile.Open(Path.Combine(SharedMemoryFile.DefaultDirectory, name), bytes);
        try
        {
            unsafe
            {
                _window = node.Gpus.Devices[0].RegisterHostMemory((nint)_windowFile.Pointer, bytes);
            }
        }
        catch
        {
            _windowFile.Dispose();
            _windowFile = null;
            throw;
        }
    }

    private async Task HandleAsync(FrameType type, uint requestId, byte[] payload)
    {
        var started = Stopwatch.GetTimestamp();
        string path = "control";
        using var activity = Telemetry.ActivitySource.StartActivity($"faastube.node.{type}");
        activity?.SetTag("faastube.workflow", _workflow);
        try
        {
            PayloadWriter reply;
            (reply, path) = type switch
            {
                FrameType.PutBegin => (await PutBeginAsync(payload).ConfigureAwait(false), "host"),
                FrameType.PutPart => (await PutPartAsync(payload).ConfigureAwait(false), "host"),
                FrameType.PutCommit => (Commit(payload, isPublish: false), "host"),
                FrameType.Allocate => (await AllocateAsync(payload).ConfigureAwait(false), "zero-copy"),
                FrameType.Publish => (Commit(payload, isPublish: true), "zero-copy"),
                FrameType.Get => await GetAsync(payload).ConfigureAwait(false),
                FrameType.GetToHost => (await GetToHostAsync(payload).ConfigureAwait(false), "host"),
                FrameType.Release => (Release(payload), "control"),
                FrameType.Where => (Where(payload), "control"),
                FrameType.SlabClosed => (SlabClosed(payload), "control"),
                FrameType.Delete => (Delete(payload), "control"),
                _ => throw new TubeException(TubeError.BadRequest, $"Unknown request type {(byte)type}."),
            };
            await SendAsync(FrameType.Ok, requestId, reply.Memory).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            var (error, message) = e switch
            {
                TubeException t => (t.Error, t.Reason),
                PoolException { Error: PoolError.OutOfMemory } p => (TubeError.OutOfMemory, p.Message),
                PoolException p => (TubeError.BadRequest, p.Message),
                InvalidDataException or ArgumentException or FormatException => (TubeError.BadRequest, e.Message),
                _ => (TubeError.Internal, e.ToString()),
            };
            activity?.SetStatus(ActivityStatusCode.Error, message);
            try
            {
                await SendErrorAsync(requestId, error, message).ConfigureAwait(false);
            }
            catch (Exception sendError) when (sendError is IOException or InvalidOperationException or ObjectDisposedException)
            {
                // The client is gone; the session's end cleans up.
            }
        }
        finally
        {
            ChannelMetrics.CallDuration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds,
                new KeyValuePair<string, object?>("faastube.op", type.ToString()), new KeyValuePair<string, object?>("faastube.path", path));
        }
    }

    private NodeDevice DeviceAt(int ordinal) =>
        (uint)ordinal < (uint)node.Devices.Length ? node.Devices[ordinal] : throw new TubeException(TubeError.BadRequest, $"There is no GPU {ordinal}.");

    private async Task<PayloadWriter> PutBeginAsync(byte[] payload) =>
        new PayloadWriter().Id((await NewEntryAsync(payload).ConfigureAwait(false)).Id);

    /// <summary>Put and Allocate: a block on the asked GPU, leased to this client, in the directory but not yet visible.</summary>
    private async Task<DataEntry> NewEntryAsync(byte[] payload)
    {
        var r = new PayloadReader(payload);
        long length = r.I64();
        int device = r.I32();
        if (length <= 0)
        {
            throw new TubeException(TubeError.BadRequest, $"{length} bytes asked for.");
        }

        var block = await DeviceAt(device).Pool.AllocateAsync(length, new BlockOptions { Function = _function, Holder = Id }).ConfigureAwait(false);
        return node.Register(new DataEntry(TubeId.NewId(), _workflow, device, block, Id));
    }

    /// <summary>DMA of one part from the client's pinned window into the block, under the device's transfer scheduler.</summary>
    private async Task<PayloadWriter> PutPartAsync(byte[] payload)
    {
        var r = new PayloadReader(payload);
        var id = r.Id();
        long offset = r.I64();
        int windowOffset = r.I32();
        int length = r.I32();
        string tenant = r.Str();
        long sloTicks = r.I64();
        var entry = node.Find(_workflow, id, Id);
        if (entry.Committed || entry.OwnerSession != Id)
        {
            throw new TubeException(TubeError.AccessDenied, $"{id} is not an unfinished Put of this client.");
        }

        if (length <= 0 || offset < 0 || offset > entry.Length - length || windowOffset < 0 || windowOffset > _window!.Length - length)
        {
            throw new TubeException(TubeError.BadRequest, $"Part [{offset}, +{length}) from window offset {windowOffset} is out of range.");
        }

        using var use = await entry.Block.UseAsync().ConfigureAwait(false);
        var request = new Transfers.TransferRequest { Tenant = string.IsNullOrEmpty(tenant) ? _function : tenant, Slo = sloTicks > 0 ? TimeSpan.FromTicks(sloTicks) : null };
        await node.Devices[entry.Device].Engine.ToDeviceAsync(_window.Memory.Slice(windowOffset, length), use.Memory.Slice(offset, length), request).ConfigureAwait(false);
        ChannelMetrics.Bytes.Add(length, new KeyValuePair<string, object?>("faastube.path", "host"));
        return new PayloadWriter();
    }

    private async Task<PayloadWriter> AllocateAsync(byte[] payload)
    {
        var entry = await NewEntryAsync(payload).ConfigureAwait(false);
        var block = entry.Block;
        int device = entry.Device;
        var use = await block.UseAsync().ConfigureAwait(false);
        lock (_sync)
        {
            Held(entry.Id).Push((block, use));
        }

        return Map(new PayloadWriter().Id(entry.Id), device, use);
    }

    /// <summary>PutCommit / Publish: the data becomes visible to the workflow; the producer's own lease and use go.</summary>
    private PayloadWriter Commit(byte[] payload, bool isPublish)
    {
        var r = new PayloadReader(payload);
        var id = r.Id();
        int consumers = r.I32();
        long ttlTicks = r.I64();
        bool pinned = r.U8() != 0;
        var entry = node.Find(_workflow, id, Id);
        if (entry.Committed || entry.OwnerSession != Id)
        {
            throw new TubeException(TubeError.AccessDenied, $"{id} is not an unfinished Put or Allocate of this client.");
        }

        if (!pinned && consumers < 1)
        {
            throw new TubeException(TubeError.BadRequest, "Data needs at least one consumer (or Pinned).");
        }

        lock (entry.Sync)
        {
            entry.Block.AddLease(DataEntry.DirectoryHolder);
            entry.Pinned = pinned;
            entry.RemainingConsumers = pinned ? -1 : consumers;
            entry.ExpiresAt = pinned ? null : node.Now + (ttlTicks > 0 ? TimeSpan.FromTicks(ttlTicks) : node.Options.DefaultTtl);
            entry.Committed = true;
            entry.OwnerSession = 0;
        }

        if (isPublish)
        {
            DropHeld(id); // the producer's use and lease
        }
        else
        {
            entry.Block.Pool.Release(entry.Block, Id);
        }

        return new PayloadWriter();
    }

    /// <summary>A lease and an open use for this client; device -1 is a host read (GetToHost parts follow).</summary>
    private async Task<(PayloadWriter, string)> GetAsync(byte[] payload)
    {
        var r = new PayloadReader(payload);
        var id = r.Id();
        int device = r.I32();
        var entry = node.Find(_workflow, id);
        PoolBlock block;
        string path;
        if (device < 0 || device == entry.Device)
        {
            block = entry.Block;
            path = device < 0 ? "host" : "zero-copy";
        }
        else
        {
            block = await ReplicaAsync(entry, DeviceAt(device)).ConfigureAwait(false);
            path = "peer-copy";
        }

        lock (entry.Sync)
        {
            if (!node.Find(_workflow, id).Equals(entry))
            {
                throw new TubeException(TubeError.NotFound, $"No data {id} in workflow '{_workflow}'.");
            }

            block.AddLease(Id);
        }

        bool wasResident = block.IsResident;
        BlockUse use;
        try
        {
            use = await block.UseAsync().ConfigureAwait(false);
        }
        catch
        {
            block.Pool.Release(block, Id);
            throw;
        }

        lock (_sync)
        {
            Held(id).Push((block, use));
        }

        path = wasResident ? path : "restore";
        ChannelMetrics.Bytes.Add(block.Length, new KeyValuePair<string, object?>("faastube.path", path));
        var reply = new PayloadWriter().I64(block.Length);
        return (device < 0 ? reply : Map(reply, device, use), path);
    }

    /// <summary>The copy of <paramref name="entry"/> on another GPU, made once over the routed peer paths and kept for later consumers there.</summary>
    private async Task<PoolBlock> ReplicaAsync(DataEntry entry, NodeDevice target)
    {
        int device = target.Device.Ordinal;
        lock (entry.Sync)
        {
            if (entry.On(device) is { } existing)
            {
                return existing;
            }
        }

        var copy = await target.Pool.AllocateAsync(entry.Length, new BlockOptions { Function = entry.Block.Function, Holder = DataEntry.DirectoryHolder, Pinned = entry.Pinned }).ConfigureAwait(false);
        using (var from = await entry.Block.UseAsync().ConfigureAwait(false))
        using (var to = await copy.UseAsync().ConfigureAwait(false))
        {
            await node.Copier.CopyAsync(from.Memory, to.Memory).ConfigureAwait(false);
        }

        lock (entry.Sync)
        {
            if (entry.On(device) is { } raced)
            {
                copy.Pool.Release(copy, DataEntry.DirectoryHolder);
                return raced;
            }

            entry.Replicas[device] = copy;
            return copy;
        }
    }

    private async Task<PayloadWriter> GetToHostAsync(byte[] payload)
    {
        var r = new PayloadReader(payload);
        var id = r.Id();
        long offset = r.I64();
        int windowOffset = r.I32();
        int length = r.I32();
        BlockUse use;
        lock (_sync)
        {
            use = _held.TryGetValue(id, out var stack) && stack.Count > 0
                ? stack.Peek().Use
                : throw new TubeException(TubeError.NotLeased, $"Get {id} before reading it to the host.");
        }

        if (length <= 0 || offset < 0 || offset > use.Memory.Length - length || windowOffset < 0 || windowOffset > _window!.Length - length)
        {
            throw new TubeException(TubeError.BadRequest, $"Part [{offset}, +{length}) to window offset {windowOffset} is out of range.");
        }

        await node.Devices[use.Block.Pool.Device.Ordinal].Engine.ToHostAsync(use.Memory.Slice(offset, length), _window.Memory.Slice(windowOffset, length), new Transfers.TransferRequest { Tenant = _function }).ConfigureAwait(false);
        return new PayloadWriter();
    }

    /// <summary>A consumer is done: its lease goes; when all consumers are, the data is freed at once.</summary>
    private PayloadWriter Release(byte[] payload)
    {
        var id = new PayloadReader(payload).Id();
        if (!DropHeld(id))
        {
            throw new TubeException(TubeError.NotLeased, $"This client holds no lease on {id}.");
        }

        var entry = node.TryFind(_workflow, id);
        if (entry is { Committed: false } abandoned && abandoned.OwnerSession == Id)
        {
            node.RemoveEntry(abandoned); // an allocation dropped before Publish
        }
        else if (entry is { Committed: true })
        {
            bool last;
            lock (entry.Sync)
            {
                last = entry.RemainingConsumers > 0 && --entry.RemainingConsumers == 0;
            }

            if (last)
            {
                node.RemoveEntry(entry);
            }
        }

        return new PayloadWriter();
    }

    private PayloadWriter Where(byte[] payload) =>
        new PayloadWriter().I32(node.Find(_workflow, new PayloadReader(payload).Id()).Device);

    private PayloadWriter SlabClosed(byte[] payload)
    {
        var r = new PayloadReader(payload);
        int device = r.I32(), slab = r.I32(), generation = r.I32();
        lock (_sync)
        {
            if (!_opened.Remove((device, slab, generation)))
            {
                throw new TubeException(TubeError.BadRequest, $"This client has not opened slab {slab} generation {generation} of GPU {device}.");
            }
        }

        DeviceAt(device).Pool.CloseSlab(slab, generation, Id);
        return new PayloadWriter();
    }

    private PayloadWriter Delete(byte[] payload)
    {
        var entry = node.Find(_workflow, new PayloadReader(payload).Id());
        node.RemoveEntry(entry);
        return new PayloadWriter();
    }

    /// <summary>Appends the mapping of a use: device, slab id, generation, offset, length, and the slab's IPC handle the first time this client sees the slab.</summary>
    private PayloadWriter Map(PayloadWriter reply, int device, BlockUse use)
    {
        var d = use.Descriptor;
        bool first;
        lock (_sync)
        {
            first = !inProcess && _opened.Add((device, d.SlabId, d.Generation));
        }

        byte[] handle = [];
        if (first)
        {
            handle = new byte[IpcMemoryHandle.Size];
            node.Devices[device].Pool.OpenSlab(d.SlabId, d.Generation, Id).WriteTo(handle);
        }

        return reply.I32(device).I32(d.SlabId).I32(d.Generation).I64(d.Offset).I64(d.Length).Bytes(handle);
    }

    private Stack<(PoolBlock, BlockUse)> Held(TubeId id) =>
        _held.TryGetValue(id, out var stack) ? stack : _held[id] = new Stack<(PoolBlock, BlockUse)>();

    /// <summary>Ends one use and lease this client holds on <paramref name="id"/>; false when it holds none.</summary>
    private bool DropHeld(TubeId id)
    {
        (PoolBlock Block, BlockUse Use) held;
        lock (_sync)
        {
            if (!_held.TryGetValue(id, out var stack) || stack.Count == 0)
            {
                return false;
            }

            held = stack.Pop();
            if (stack.Count == 0)
            {
                _held.Remove(id);
            }
        }

        held.Use.Dispose();
        held.Block.Pool.Release(held.Block, Id);
        return true;
    }

    /// <summary>The session ended: every use ends (leases go with the pool's ReleaseHolder), the window is unregistered.</summary>
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
        ((IDisposable?)_window)?.Dispose();
        _windowFile?.Dispose();
    }

    /// <summary>Pushes "close this slab" (request id 0) to the client; it answers with SlabClosed once its buffers there are gone.</summary>
    public void TellToClose(int device, int slab, int generation) =>
        _ = SendAsync(FrameType.CloseSlab, 0, new PayloadWriter().I32(device).I32(slab).I32(generation).Memory).AsTask()
            .ContinueWith(t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted);

    public async Task CloseAsync()
    {
        await FrameWriter.Quietly(reader.CompleteAsync()).ConfigureAwait(false);
        await _writer.CompleteAsync().ConfigureAwait(false);
    }

    private Task SendErrorAsync(uint requestId, TubeError error, string message) =>
        SendAsync(FrameType.Error, requestId, new PayloadWriter().U16((ushort)error).Str(message.Length > 2000 ? message[..2000] : message).Memory).AsTask();

    private ValueTask SendAsync(FrameType type, uint requestId, ReadOnlyMemory<byte> payload) =>
        _writer.SendAsync(type, requestId, payload, CancellationToken.None);
}
