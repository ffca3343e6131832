using Microsoft.Extensions.Logging;
using FaaSTube.Devices;

namespace FaaSTube.Memory;

/// <summary>What a growth attempt did.</summary>
internal enum SlabGrowth
{
    /// <summary>A slab was added (cleared already, or returned to be cleared): try placing again.</summary>
    Grown,

    /// <summary>The cap or the device's free memory blocks it and nothing empty could be given back.</summary>
    Blocked,

    /// <summary>Blocked, but empty slabs that importers have open are retiring: memory comes back when they close them.</summary>
    Pending,
}

/// <summary>
/// What the slabs hold now, read from the slabs themselves (their capacities and their allocators'
/// free extents): there is no second count that could drift from them.
/// </summary>
/// <param name="Reserved">Device memory held: the slabs' capacities.</param>
/// <param name="Free">Bytes of the slabs no block (resident, or being restored into) holds.</param>
/// <param name="LargestFree">The largest contiguous free range of any slab.</param>
/// <param name="Slabs">Slabs held (retiring and clearing ones included).</param>
internal readonly record struct SlabUsage(long Reserved, long Free, long LargestFree, int Slabs)
{
    /// <summary>Bytes in blocks (rounded to the alignment): reserved less free.</summary>
    public long InUse => Reserved - Free;
}

/// <summary>
/// The pool's slabs on one device: it grows them (per partition, under the cap and the device's free
/// memory), places blocks in them, retires and frees them, and answers how much is reserved and in
/// use from their extents. A slot's generation goes up each time it takes a new slab, so a
/// descriptor of a freed slab goes stale. Placement takes only the slab's own lock; growth,
/// retirement and freeing take the set's lock (<see cref="Sync"/>).
/// </summary>
internal sealed class SlabSet
{
    /// <summary>Slabs are whole MiB: a request larger than <see cref="GpuPoolOptions.SlabBytes"/> gets a slab rounded up to this.</summary>
    public const long Rounding = 1L << 20;

    private readonly GpuDevice _device;
    private readonly GpuPoolOptions _options;
    private readonly Func<TimeSpan> _now;
    private readonly ILogger _logger;
    private volatile Slab?[] _slabs = [];
    private int[] _generations = [];

    /// <param name="device">Where the slabs are allocated.</param>
    /// <param name="options">Slab size, cap, free-memory fraction, clearing.</param>
    /// <param name="now">The pool's clock (empty-since times).</param>
    /// <param name="logger">Where slabs taken and given back are logged (<c>PoolLog.cs</c>).</param>
    public SlabSet(GpuDevice device, GpuPoolOptions options, Func<TimeSpan> now, ILogger logger)
    {
        _device = device;
        _options = options;
        _now = now;
        _logger = logger;
    }

    /// <summary>Guards growth, retirement and freeing (never placement).</summary>
    public Lock Sync { get; } = new();

    /// <summary>Raised (under <see cref="Sync"/>) when a slab goes back to the device: (slab id, generation).</summary>
    public event Action<int, int>? SlabFreed;

    /// <summary>The slabs now, by slot (null: a free slot). A snapshot: never changed in place.</summary>
    public IReadOnlyList<Slab?> All => _slabs;

    /// <summary>Device memory held: the sum of the slabs' capacities.</summary>
    public long ReservedBytes
    {
        get
        {
            long reserved = 0;
            foreach (var slab in _slabs)
            {
                reserved += slab?.Capacity ?? 0;
            }

            return reserved;
        }
    }

    /// <summary>Reserved, free and in-use bytes, read from the slabs (one pass, each slab under its own lock).</summary>
    public SlabUsage Usage()
    {
        long reserved = 0, free = 0, largest = 0;
        int count = 0;
        foreach (var slab in _slabs)
        {
            if (slab is null)
            {
                continue;
            }

            var (slabFree, slabLargest) = slab.FreeSpace();
            reserved += slab.Capacity;
            free += slabFree;
            largest = Math.Max(largest, slabLargest);
            count++;
        }

        return new SlabUsage(reserved, free, largest, count);
    }

    /// <summary>
    /// Finds room in an active slab of <paramref name="partition"/> (never another partition's: a
    /// client that maps the slab may see only its own partition's bytes), starting at a per-thread
    /// slab to spread lock traffic.
    /// </summary>
    public bool TryPlace(long rounded, string partition, out Slab slab, out long offset)
    {
        var slabs = _slabs;
        int n = slabs.Length;
        int start = n == 0 ? 0 : Environment.CurrentManagedThreadId % n;
        for (int i = 0; i < n; i++)
        {
            if (slabs[(start + i) % n] is { } candidate
                && string.Equals(candidate.Partition, partition, StringComparison.Ordinal)
                && (offset = candidate.TryAllocate(rounded)) >= 0)
            {
                slab = candidate;
                return true;
            }
        }

        slab = null!;
        offset = -1;
        return false;
    }

    /// <summary>
    /// Adds a slab of <paramref name="partition"/> for <paramref name="rounded"/> bytes if the cap and
    /// the device's free memory allow, after giving empty slabs back when they do not (memory moves
    /// between partitions only this way: a slab is freed to the device, and a new one grown). A new
    /// slab must be cleared on the device before it takes a block, unless the backend zeroes fresh
    /// memory: that slab is returned to clear (in the Clearing state, it takes no block until
    /// <see cref="Activate"/>). Slabs that start retiring are added to <paramref name="retiring"/>.
    /// </summary>
    public (SlabGrowth Growth, Slab? ToClear) TryGrow(long rounded, string partition, List<SlabRetiringEventArgs> retiring)
    {
        long size = Math.Max(_options.SlabBytes, (rounded + Rounding - 1) & ~(Rounding - 1));
        bool clear = _options.AlwaysClearNewSlabs || !_device.FreshAllocationsAreZeroed;
        lock (Sync)
        {
            var growth = MakeDeviceRoomLocked(size, retiring);
            if (growth != SlabGrowth.Grown)
            {
                return (growth, null);
            }

            try
            {
                var slab = AddLocked(_device.Allocate(size), partition, clear ? SlabState.Clearing : SlabState.Active);
                return (SlabGrowth.Grown, clear ? slab : null);
            }
            catch (DeviceOutOfMemoryException)
            {
                return (SlabGrowth.Blocked, null);
            }
        }
    }

    /// <summary>A cleared slab starts taking blocks.</summary>
    public void Activate(Slab slab) => slab.Activate(_now());

    /// <summary>A slab whose clearing failed goes back to the device unused.</summary>
    public void FreeUncleared(Slab slab)
    {
        lock (Sync)
        {
            if (slab.State == SlabState.Clearing)
            {
                FreeLocked(slab);
            }
        }
    }

    /// <summary>
    /// Retires slabs that have been empty for <paramref name="minIdle"/>, oldest first, while the
    /// active slabs stay at or above <paramref name="target"/> bytes; returns the bytes freed now
    /// (slabs that importers have open retire and are added to <paramref name="retiring"/> instead).
    /// </summary>
    public long Trim(long target, TimeSpan minIdle, List<SlabRetiringEventArgs> retiring)
    {
        var now = _now();
        lock (Sync)
        {
            long before = ReservedBytes;
            long active = _slabs.Where(s => s is { State: SlabState.Active }).Sum(s => s!.Capacity);
            var idle = _slabs
                .Where(s => s is { State: SlabState.Active, EmptySince: not null } && now - s.EmptySince!.Value >= minIdle)
                .OrderBy(s => s!.EmptySince)
                .ToList();
            foreach (var slab in idle)
            {
                if (active - slab!.Capacity < target)
                {
                    break;
                }

                if (RetireLocked(slab, retiring))
                {
                    active -= slab.Capacity;
                }
            }

            return before - ReservedBytes;
        }
    }

    /// <summary>A retiring slab that its last importer closed goes back to the device.</summary>
    public void FreeRetired(Slab slab)
    {
        lock (Sync)
        {
            if (slab.State == SlabState.Retiring)
            {
                FreeLocked(slab);
            }
        }
    }

    /// <summary>The slab in <paramref name="slabId"/> of <paramref name="generation"/>, or <see cref="PoolError.Stale"/>.</summary>
    public Slab Find(int slabId, int generation)
    {
        var slabs = _slabs;
        if ((uint)slabId >= (uint)slabs.Length || slabs[slabId] is not { } slab || slab.Generation != generation)
        {
            throw new PoolException(PoolError.Stale, $"Slab {slabId} generation {generation} is not held by the pool.");
        }

        return slab;
    }

    /// <summary>Frees every slab (the pool is disposed): their descriptors go stale.</summary>
    public void FreeAll()
    {
        lock (Sync)
        {
            foreach (var slab in _slabs)
            {
                if (slab is not null)
                {
                    slab.State = SlabState.Freed;
                    slab.Buffer.Dispose();
                }
            }

            _slabs = [];
        }
    }

    /// <summary>True when a slab of <paramref name="size"/> bytes fits under the cap and the device's free-memory fraction.</summary>
    private bool CanReserveLocked(long size) =>
        ReservedBytes + size <= _options.MaxBytes && size <= _options.MaxFreeMemoryFraction * _device.GetMemoryInfo().Free;

    /// <summary>
    /// Makes room on the device for a slab of <paramref name="size"/>: frees empty slabs that no
    /// importer has open (oldest empty first, any partition: an empty slab holds no one's data), then
    /// starts retiring empty slabs that importers have open.
    /// </summary>
    private SlabGrowth MakeDeviceRoomLocked(long size, List<SlabRetiringEventArgs> retiring)
    {
        if (CanReserveLocked(size))
        {
            return SlabGrowth.Grown;
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
                return SlabGrowth.Grown;
            }
        }

        // What is still missing, under the cap and under the fraction of free memory; slabs already
        // retiring count towards it (they come back when their importers close them).
        long shortfall = Math.Max(
            ReservedBytes + size - _options.MaxBytes,
            (long)Math.Ceiling(size / _options.MaxFreeMemoryFraction) - _device.GetMemoryInfo().Free);
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
                    return SlabGrowth.Grown; // its importers had closed it meanwhile: freed at once
                }
            }
        }

        return coming > 0 && coming >= shortfall ? SlabGrowth.Pending : SlabGrowth.Blocked;
    }

    /// <summary>Puts a new slab in a free slot (or a new one), with the slot's next generation.</summary>
    private Slab AddLocked(DeviceBuffer buffer, string partition, SlabState state)
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
            slab.MarkEmptySince(_now());
        }

        slabs[slot] = slab;
        _slabs = slabs;
        PoolLog.SlabAdded(_logger, _device.Ordinal, slab.Id, buffer.Length, partition, ReservedBytes);
        return slab;
    }

    /// <summary>Starts retiring an empty slab; frees it now when no importer has it open. False if it is no longer empty.</summary>
    private bool RetireLocked(Slab slab, List<SlabRetiringEventArgs> retiring)
    {
        lock (slab.Lock)
        {
            if (slab.EmptySince is null || slab.State != SlabState.Active)
            {
                return false;
            }

            if (slab.BeginRetire(out var importers))
            {
                FreeLocked(slab);
            }
            else
            {
                retiring.Add(new SlabRetiringEventArgs(slab.Id, slab.Generation, importers));
            }

            return true;
        }
    }

    /// <summary>Returns a slab's memory to the device; its slot's descriptors go stale.</summary>
    private void FreeLocked(Slab slab)
    {
        slab.State = SlabState.Freed;
        slab.Buffer.Dispose();
        var slabs = (Slab?[])_slabs.Clone();
        slabs[slab.Id] = null;
        _slabs = slabs;
        PoolLog.SlabFreed(_logger, _device.Ordinal, slab.Id, slab.Capacity, ReservedBytes);
        SlabFreed?.Invoke(slab.Id, slab.Generation);
    }
}
