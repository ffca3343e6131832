using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Memory;

namespace FaaSTube.Channels;

/// <summary>
/// Arena ranges (requests 21-23): a client leases a range of a slab of its workflow (one round trip),
/// carves its allocations out of it itself and tells the node each carve one way, so a producer's
/// Allocate and Publish cost no round trip. The node keeps the authoritative map of the pieces
/// (<see cref="CarvedRange"/>): a carve names a range of this session only, lies inside it, overlaps
/// no live piece, and its id is new; anything else is refused and nothing is registered. A carved piece
/// is an unfinished allocation of the session exactly like one from Allocate (Publish makes it visible,
/// Release or the session's end drops it); published pieces outlive the range and the session.
/// </summary>
internal sealed partial class NodeSession
{
    /// <summary>This session's ranges by number (under <see cref="_sync"/>); numbers are the node's, never reused.</summary>
    private readonly Dictionary<long, (PoolBlock Range, BlockUse Use, int Device)> _ranges = [];

    private static long _nextRange;

    /// <summary>Leases asked for and not yet held (under <see cref="_sync"/>): they count against the session's limit.</summary>
    private int _rangesLeasing;

    /// <summary>The highest carve sequence claimed (a carve's id must rise above it): set before the carve is registered.</summary>
    private long _carveSequence;

    /// <summary>
    /// Carves between their claim and their end (registered or refused). Raised before the claim and
    /// lowered after the end, so a claimed sequence with none in flight is a carve that is in the directory
    /// or never will be.
    /// </summary>
    private int _carvesInFlight;

    /// <summary>Completed and replaced at every carve applied (Gets waiting for a carve look again).</summary>
    private TaskCompletionSource _carved = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>True when this session's carve <paramref name="sequence"/> was applied (registered or refused), or the session ended.</summary>
    public bool HasCarved(uint sequence) =>
        (Volatile.Read(ref _carveSequence) >= sequence && Volatile.Read(ref _carvesInFlight) == 0) || _ended.IsCancellationRequested;

    /// <summary>
    /// Waits (at most <paramref name="wait"/>) until this session's carve <paramref name="sequence"/>
    /// was applied or the session ended: a consumer's Get of an arena id can arrive on its connection
    /// before the producer's one-way carve was read from the producer's.
    /// </summary>
    public async Task WaitForCarveAsync(uint sequence, TimeSpan wait, CancellationToken cancellationToken)
    {
        using var either = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _ended.Token);
        var deadline = _node.Now + wait;
        while (!HasCarved(sequence))
        {
            var signal = Volatile.Read(ref _carved).Task;
            var left = deadline - _node.Now;
            if (HasCarved(sequence) || left <= TimeSpan.Zero)
            {
                return;
            }

            try
            {
                await signal.WaitAsync(left, _node.Services.TimeProvider, either.Token).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                return;
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return; // the producer's session ended: its carve never comes
            }
        }
    }

    /// <summary>Arena ranges this session holds now.</summary>
    public int RangeCount
    {
        get
        {
            lock (_sync)
            {
                return _ranges.Count;
            }
        }
    }

    private async Task<ArenaLeaseOk> LeaseRangeAsync(ArenaLease request)
    {
        var (length, ordinal) = request;
        var device = DeviceAt(ordinal);
        long max = _node.Settings.MaxArenaBytes;
        if (length <= 0 || length > max)
        {
            throw new TubeException(TubeError.BadRequest, max == 0
                ? "This node leases no arena ranges (MaxArenaBytes is 0): allocate with Allocate."
                : $"An arena range of {length} bytes: it must be 1 up to the node's MaxArenaBytes of {max}.");
        }

        lock (_sync)
        {
            // A lease counts from the moment it is asked for: leases running at once cannot pass
            // the limit together and find out only after their ranges were allocated.
            if (_ranges.Count + _rangesLeasing >= _node.Settings.MaxArenaRangesPerSession)
            {
                throw new TubeException(TubeError.BadRequest, $"This client holds {_ranges.Count} arena ranges and is leasing {_rangesLeasing}, the most the node allows one connection; return one first.");
            }

            _rangesLeasing++;
        }

        BlockUse? use = null;
        PoolBlock? range = null;
        long number = Interlocked.Increment(ref _nextRange);
        try
        {
            var options = new BlockOptions { Function = _function, Holder = Holder, Partition = _workflow };
            range = await InTurnAsync(ended => device.Pool.LeaseRangeAsync(length, options, ended)).ConfigureAwait(false);
            use = await range.UseAsync(_ended.Token).ConfigureAwait(false); // resident for good: a range is never evicted
            lock (_sync)
            {
                _rangesLeasing--;
                _ranges.Add(number, (range, use, ordinal));
            }
        }
        catch
        {
            lock (_sync)
            {
                _rangesLeasing--;
            }

            use?.Dispose(); // a range still in use would never be freed
            if (range is not null)
            {
                range.Pool.Release(range, Holder);
            }

            throw;
        }

        return new ArenaLeaseOk(number, Map(ordinal, use));
    }

    /// <summary>Registers a piece of one of this session's ranges as the session's unfinished allocation (one way).</summary>
    private async Task<Empty> CarveAsync(ArenaCarve request)
    {
        var (number, id, offset, length) = request;
        var (session, sequence) = id.ArenaParts;
        Interlocked.Increment(ref _carvesInFlight); // before the claim: a Get never sees the sequence claimed and nothing in flight before the entry is registered
        try
        {
            while (true)
            {
                long last = Volatile.Read(ref _carveSequence);
                if (session != (uint)Id || sequence <= last)
                {
                    throw new TubeException(TubeError.BadRequest, $"{id} is not a new arena id of this client (its session {(uint)Id} and a sequence above {last}).");
                }

                if (Interlocked.CompareExchange(ref _carveSequence, sequence, last) == last)
                {
                    break;
                }
            }

            PoolBlock range;
            int device;
            lock (_sync)
            {
                if (!_ranges.TryGetValue(number, out var held))
                {
                    throw new TubeException(TubeError.NotLeased, $"This client holds no arena range {number}.");
                }

                (range, device) = (held.Range, held.Device);
            }

            return await CarveCheckedAsync(id, range, device, offset, length).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _carvesInFlight);
            Interlocked.Exchange(ref _carved, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult(); // a Get waiting for this carve looks again
        }
    }

    private async Task<Empty> CarveCheckedAsync(TubeId id, PoolBlock range, int device, long offset, long length)
    {
        CheckRoomToHold();
        if (_node.Directory.TryFind(_workflow, id) is not null)
        {
            throw new TubeException(TubeError.BadRequest, $"{id} is in use already: a carve names a new id.");
        }

        var options = new BlockOptions { Function = _function, Holder = Holder, Partition = _workflow };
        var piece = range.Pool.Carve(range, offset, length, options); // inside the range, aligned, no overlap: else refused, nothing taken
        var entry = new DataEntry(id, _workflow, device, piece, Id) { IsAllocation = true };
        if (!_node.Directory.TryRegister(entry))
        {
            piece.Pool.Release(piece, Holder);
            throw new TubeException(TubeError.BadRequest, $"{id} is in use already: a carve names a new id.");
        }

        BlockUse use;
        try
        {
            use = await piece.UseAsync(_ended.Token).ConfigureAwait(false); // resident where it lies: completes at once
        }
        catch
        {
            _node.Directory.Remove(entry);
            throw;
        }

        lock (_sync)
        {
            Held(id).Push((piece, use));
        }

        return default;
    }

    /// <summary>The client gives a range back (one way): what no live piece holds returns to the pool now.</summary>
    private Empty ReturnRange(ArenaReturn request)
    {
        (PoolBlock Range, BlockUse Use, int Device) held;
        lock (_sync)
        {
            if (!_ranges.Remove(request.Range, out held))
            {
                throw new TubeException(TubeError.NotLeased, $"This client holds no arena range {request.Range}.");
            }
        }

        held.Use.Dispose();
        held.Range.Pool.Release(held.Range, Holder);
        return default;
    }

    /// <summary>The uses of this session's ranges, taken out for its end (their leases go with the session's holder).</summary>
    private List<BlockUse> TakeRangeUses()
    {
        var uses = _ranges.Values.Select(r => r.Use).ToList();
        _ranges.Clear();
        return uses;
    }
}
