using FaaSTube.Diagnostics;
using Microsoft.Extensions.Logging;
using FaaSTube.Devices;

namespace FaaSTube.Memory;

/// <summary>Which way a block moves.</summary>
internal enum MoveDirection
{
    /// <summary>Eviction: from its device range to a spill entry.</summary>
    ToHost,

    /// <summary>Restore: from its spill entry to a device range.</summary>
    ToDevice,
}

/// <summary>
/// A block marked as moving, and the two places it moves between: a device range and a spill entry.
/// The copy still has to run (<see cref="BlockMover.RunAsync"/>).
/// </summary>
/// <param name="Block">The block, marked moving.</param>
/// <param name="Direction">Which way.</param>
/// <param name="Slab">The device side: where it is (to host) or where it goes (to device).</param>
/// <param name="Offset">The device range's offset in <paramref name="Slab"/>.</param>
/// <param name="Entry">The host side: the reserved entry (to host) or the block's spill (to device).</param>
internal sealed record BlockMove(PoolBlock Block, MoveDirection Direction, Slab Slab, long Offset, SpillStore.SpillEntry Entry);

/// <summary>
/// Moves blocks between the device and the spill store: eviction and restore are one routine
/// (<see cref="RunAsync"/>) that copies from the side the block is on to the other, then lets the
/// block live at the target and gives the source back, or on failure gives the target back. The
/// decisions (which block, which range) are the pool's, taken under its pressure gate; the copies run
/// here, outside it, each on the least-loaded of the pool's lanes (<see cref="MoveLanes"/>), so a
/// tenant's multi-GiB move does not queue another tenant's move while a lane is free.
/// </summary>
internal sealed class BlockMover : IDisposable
{
    private readonly MoveLanes _lanes;
    private readonly SpillStore _spill;
    private readonly PoolCounters _counters;
    private readonly Func<TimeSpan> _now;
    private readonly Action _ended;
    private readonly ILogger _logger;
    private readonly int _device;
    private int _inFlight;
    private int _stopped;

    /// <param name="device">Whose streams copy.</param>
    /// <param name="spill">Where evicted blocks go.</param>
    /// <param name="counters">Where finished moves are counted.</param>
    /// <param name="now">The pool's clock (a slab's empty-since time).</param>
    /// <param name="ended">Called after each move, finished or failed (the pool wakes its waiters).</param>
    /// <param name="logger">Where finished moves are logged (<c>PoolLog.cs</c>).</param>
    public BlockMover(GpuDevice device, SpillStore spill, PoolCounters counters, Func<TimeSpan> now, Action ended, ILogger logger)
    {
        _logger = logger;
        _device = device.Ordinal;
        _lanes = new MoveLanes(device);
        _spill = spill;
        _counters = counters;
        _now = now;
        _ended = ended;
    }

    /// <summary>Moves running now.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Zero-fills <paramref name="memory"/> (a new slab) on the least-loaded lane.</summary>
    public async Task ClearAsync(DeviceMemory memory, CancellationToken cancellationToken)
    {
        using var lane = _lanes.Take(memory.Length);
        await lane.Stream.FillAsync(memory, 0, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Starts evicting <paramref name="block"/>: reserves its spill entry and marks it moving. False
    /// when the spill store is full (or the mover stopped); true with a null move when the block
    /// changed under the caller (used, freed, moving or made unevictable): pick again.
    /// </summary>
    public bool TryBeginEviction(PoolBlock block, out BlockMove? move)
    {
        move = null;
        if (Volatile.Read(ref _stopped) != 0 || _spill.TryReserve(block.Length) is not { } entry)
        {
            return false;
        }

        lock (block.Sync)
        {
            if (block.Slab is not { } slab || block.IsMoving || block.Uses > 0 || block.Freed || block.Unevictable)
            {
                entry.Dispose();
                return true;
            }

            move = BeginLocked(new BlockMove(block, MoveDirection.ToHost, slab, block.Offset, entry));
            return true;
        }
    }

    /// <summary>
    /// Starts restoring <paramref name="block"/> into the range the caller took at
    /// <paramref name="offset"/> of <paramref name="slab"/>. Null when there is nothing to restore
    /// (freed, already back, or moving by another path: the range is given back) or the mover stopped.
    /// </summary>
    public BlockMove? TryBeginRestore(PoolBlock block, Slab slab, long offset)
    {
        lock (block.Sync)
        {
            if (block.Freed || block.Spill is not { } entry || block.IsMoving)
            {
                slab.Free(offset, block.Rounded, _now());
                return null;
            }

            if (Volatile.Read(ref _stopped) != 0)
            {
                return null; // the pool is going: its slabs go with it
            }

            return BeginLocked(new BlockMove(block, MoveDirection.ToDevice, slab, offset, entry));
        }
    }

    /// <summary>
    /// Copies the block to the other side, then (under its lock) makes the target its home and gives
    /// the source back; if the copy fails, gives the target back and leaves the block where it was. A
    /// block freed while it moved gives back both. True when the block is live at the target.
    /// </summary>
    public async Task<bool> RunAsync(BlockMove move, CancellationToken cancellationToken)
    {
        var (block, direction, slab, offset, entry) = move;
        var device = slab.Buffer.Slice(offset, block.Length);
        using var lane = _lanes.Take(block.Length);
        var stream = lane.Stream;
        using var span = PoolMetrics.StartMove(_device, block.Length, evict: direction == MoveDirection.ToHost);
        try
        {
            await (direction == MoveDirection.ToHost
                ? entry.WriteFromDeviceAsync(stream, device, cancellationToken)
                : entry.ReadToDeviceAsync(stream, device, cancellationToken)).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Spans.Fail(span, e);
            lock (block.Sync)
            {
                block.IsMoving = false;
                GiveBack(move, target: true);
                if (block.Freed)
                {
                    block.ReleaseStorageLocked(_now());
                }
            }

            End();
            throw;
        }

        bool live;
        lock (block.Sync)
        {
            block.IsMoving = false;
            GiveBack(move, target: false);
            if (direction == MoveDirection.ToHost)
            {
                (block.Slab, block.Spill) = (null, entry);
            }
            else
            {
                (block.Slab, block.Offset, block.Spill) = (slab, offset, null);
            }

            live = !block.Freed;
            if (!live)
            {
                block.ReleaseStorageLocked(_now());
            }
        }

        _counters.Moved(direction, block.Length);
        if (direction == MoveDirection.ToDevice)
        {
            PoolLog.Restored(_logger, _device, block.Id, block.Length);
        }
        else
        {
            PoolLog.Evicted(_logger, _device, block.Id, block.Length, block.Partition);
        }

        End();
        return live;
    }

    /// <summary>Starts no more moves and waits (bounded: they are device copies) for those in flight, so their slabs and spill entries can go.</summary>
    public void Stop(TimeSpan wait)
    {
        StopStarting();
        SpinWait.SpinUntil(() => InFlight == 0, wait);
    }

    /// <summary>Starts no more moves (those in flight go on: wait for <see cref="InFlight"/> to reach 0).</summary>
    public void StopStarting() => Volatile.Write(ref _stopped, 1);

    /// <summary>Disposes the lanes' streams.</summary>
    public void Dispose() => _lanes.Dispose();

    private BlockMove BeginLocked(BlockMove move)
    {
        move.Block.IsMoving = true;
        Interlocked.Increment(ref _inFlight);
        return move;
    }

    /// <summary>Gives back one side of a move: the device range or the spill entry, whichever the target (or the source) is.</summary>
    private void GiveBack(BlockMove move, bool target)
    {
        bool deviceSide = target == (move.Direction == MoveDirection.ToDevice);
        if (deviceSide)
        {
            if (!target && move.Block.CarvedFrom is not null)
            {
                move.Block.LeaveCarvedRangeLocked(_now()); // an evicted arena piece: its bytes go back where its range says
            }
            else
            {
                move.Slab.Free(move.Offset, move.Block.Rounded, _now());
            }
        }
        else
        {
            move.Entry.Dispose();
        }
    }

    private void End()
    {
        Interlocked.Decrement(ref _inFlight);
        _ended();
    }
}
