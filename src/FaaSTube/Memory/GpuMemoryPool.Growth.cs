using FaaSTube.Devices;

namespace FaaSTube.Memory;

/// <summary>
/// Growth: a new slab for one partition, after giving empty slabs back to the device when the cap or
/// the device's free memory blocks it, cleared on the device before its first block.
/// </summary>
public sealed partial class GpuMemoryPool
{
    /// <summary>Slabs are whole MiB: a request larger than <see cref="GpuPoolOptions.SlabBytes"/> gets a slab rounded up to this.</summary>
    private const long SlabRounding = 1L << 20;

    private long _slabsCleared;

    /// <summary>What a growth attempt did.</summary>
    private enum Growth
    {
        /// <summary>A slab was added (and cleared): try placing again.</summary>
        Grown,

        /// <summary>The cap or the device's free memory blocks it and nothing empty could be given back.</summary>
        Blocked,

        /// <summary>Blocked, but empty slabs that importers have open are retiring: memory comes back when they close them.</summary>
        Pending,
    }

    /// <summary>New slabs zero-filled on the device (tests check the clearing path ran).</summary>
    internal long SlabsCleared => Interlocked.Read(ref _slabsCleared);

    /// <summary>
    /// Adds a slab of <paramref name="partition"/> for <paramref name="rounded"/> bytes if the cap and
    /// the device's free memory allow, after giving empty slabs back when they do not (memory moves
    /// between partitions only this way: a slab is freed to the device, and a new one grown). A new
    /// slab is cleared on the device before it takes a block, unless the backend zeroes fresh memory:
    /// that slab is returned to clear (in the Clearing state, it takes no block until then).
    /// </summary>
    private (Growth Growth, Slab? ToClear) TryGrow(long rounded, string partition)
    {
        long size = Math.Max(_options.SlabBytes, (rounded + SlabRounding - 1) & ~(SlabRounding - 1));
        bool clear = _options.AlwaysClearNewSlabs || !Device.FreshAllocationsAreZeroed;
        var retiring = new List<SlabRetiringEventArgs>();
        Slab? slab = null;
        Growth growth;
        lock (_growLock)
        {
            growth = MakeDeviceRoomLocked(size, retiring);
            if (growth == Growth.Grown)
            {
                try
                {
                    slab = AddSlabLocked(Device.Allocate(size), partition, clear ? SlabState.Clearing : SlabState.Active);
                }
                catch (DeviceOutOfMemoryException)
                {
                    growth = Growth.Blocked;
                }
            }
        }

        RaiseRetiring(retiring);
        return (growth, clear ? slab : null); // the caller clears it after the pressure gate: a device memset as large as the slab
    }

    /// <summary>True when a slab of <paramref name="size"/> bytes fits under the cap and the device's free-memory fraction.</summary>
    private bool CanReserveLocked(long size) =>
        _reserved + size <= _options.MaxBytes && size <= _options.MaxFreeMemoryFraction * Device.GetMemoryInfo().Free;

    /// <summary>
    /// Makes room on the device for a slab of <paramref name="size"/>: frees empty slabs that no
    /// importer has open (oldest empty first, any partition: an empty slab holds no one's data), then
    /// starts retiring empty slabs that importers have open. Holds the grow lock.
    /// </summary>
    private Growth MakeDeviceRoomLocked(long size, List<SlabRetiringEventArgs> retiring)
    {
        if (CanReserveLocked(size))
        {
            return Growth.Grown;
        }

        var empty = _slabs
            .Where(s => s is { State: SlabState.Active, EmptySince: not null })
            .Select(s => s!)
            .OrderBy(s => s.HasImporters)
            .ThenBy(s => s.EmptySince)
            .ToList();
        foreach (var slab in empty.Where(s => !s.HasImporters))
        {
            RetireLocked(slab, retiring);
            if (CanReserveLocked(size))
            {
                return Growth.Grown;
            }
        }

        // What is still missing, under the cap and under the fraction of free memory; slabs already
        // retiring count towards it (they come back when their importers close them).
        long shortfall = Math.Max(
            _reserved + size - _options.MaxBytes,
            (long)Math.Ceiling(size / _options.MaxFreeMemoryFraction) - Device.GetMemoryInfo().Free);
        long coming = _slabs.Where(s => s is { State: SlabState.Retiring }).Sum(s => s!.Capacity);
        foreach (var slab in empty)
        {
            if (coming >= shortfall)
            {
                break;
            }

            if (slab.State == SlabState.Active && RetireLocked(slab, retiring))
            {
                coming += slab.State == SlabState.Retiring ? slab.Capacity : 0;
                if (CanReserveLocked(size))
                {
                    return Growth.Grown; // its importers had closed it meanwhile: freed at once
                }
            }
        }

        return coming > 0 && coming >= shortfall ? Growth.Pending : Growth.Blocked;
    }

    /// <summary>Puts a new slab in a free slot (or a new one), with the slot's next generation. Holds the grow lock.</summary>
    private Slab AddSlabLocked(DeviceBuffer buffer, string partition, SlabState state)
    {
        var slabs = _slabs;
        int slot = Array.IndexOf(slabs, null);
        if (slot < 0)
        {
            slot = slabs.Length;
            Array.Resize(ref slabs, slot + 1);
            Array.Resize(ref _generations, slot + 1);
        }
        else
        {
            slabs = (Slab?[])slabs.Clone();
        }

        var slab = new Slab(slot, ++_generations[slot], buffer, partition, state);
        if (state == SlabState.Active)
        {
            slab.MarkEmptySince(Now);
        }

        slabs[slot] = slab;
        _slabs = slabs;
        _reserved += buffer.Length;
        if (_trimTimer is null && _options.TrimInterval is { } interval && Volatile.Read(ref _disposed) == 0)
        {
            _trimTimer = _time.CreateTimer(_ => TrimQuietly(), null, interval, interval); // the first slab starts it: an empty pool has nothing to trim, and its constructor starts nothing
        }

        PoolLog.SlabAdded(_logger, Device.Ordinal, slab.Id, buffer.Length, partition, _reserved);
        return slab;
    }

    /// <summary>
    /// Zero-fills a new slab through the pool's stream, then lets it take blocks: memory changes owner
    /// only once cleared on the device. If the fill fails the slab goes back to the device unused.
    /// </summary>
    private async Task ClearAsync(Slab slab, CancellationToken cancellationToken)
    {
        try
        {
            await StreamFor(slab.Partition).FillAsync(slab.Buffer.Slice(0, slab.Capacity), 0, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            lock (_growLock)
            {
                if (slab.State == SlabState.Clearing)
                {
                    FreeSlabLocked(slab);
                }
            }

            throw;
        }

        slab.Activate(Now);
        Interlocked.Increment(ref _slabsCleared);
        SignalMemoryChange(); // room for whoever waits in its partition
    }
}
