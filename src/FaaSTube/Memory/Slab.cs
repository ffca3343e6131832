using FaaSTube.Devices;

namespace FaaSTube.Memory;

/// <summary>What a slab is doing.</summary>
internal enum SlabState
{
    /// <summary>Serving allocations.</summary>
    Active,

    /// <summary>Being returned to the device: no new allocations; freed when every importer has closed it.</summary>
    Retiring,

    /// <summary>Returned to the device; its descriptors are stale.</summary>
    Freed,

    /// <summary>New, and being zero-filled on the device: takes no allocations and cannot be opened until cleared.</summary>
    Clearing,
}

/// <summary>A slab as a UI or a node sees it.</summary>
/// <param name="Id">Slot in the pool.</param>
/// <param name="Generation">The slot's generation.</param>
/// <param name="Capacity">Bytes.</param>
/// <param name="FreeBytes">Bytes not allocated.</param>
/// <param name="LargestFree">The largest contiguous free range.</param>
/// <param name="State">Active or retiring.</param>
/// <param name="Importers">Importers that have it open.</param>
/// <param name="Exports">How many times it was exported (once at most).</param>
/// <param name="Partition">The partition whose blocks it holds, fixed for its whole life (<see cref="BlockOptions.Partition"/>).</param>
internal readonly record struct SlabInfo(int Id, int Generation, long Capacity, long FreeBytes, long LargestFree, SlabState State, IReadOnlyList<LeaseHolder> Importers, int Exports, string Partition);

/// <summary>
/// One large device allocation, sub-allocated by an <see cref="ExtentAllocator"/> under its own lock.
/// It belongs to one partition from creation to free (<see cref="Partition"/> never changes), so a
/// process that mapped it can only ever see that partition's bytes.
/// </summary>
internal sealed class Slab(int id, int generation, DeviceBuffer buffer, string partition, SlabState state = SlabState.Active)
{
    private readonly ExtentAllocator _extents = new(buffer.Length);
    private readonly HashSet<LeaseHolder> _importers = [];
    private IpcMemoryHandle? _handle;

    public Lock Lock { get; } = new();

    public int Id { get; } = id;

    public int Generation { get; } = generation;

    public DeviceBuffer Buffer { get; } = buffer;

    public long Capacity => Buffer.Length;

    /// <summary>The partition whose blocks it holds: set at creation, never changed.</summary>
    public string Partition { get; } = partition;

    public SlabState State { get; set; } = state;

    /// <summary>When the slab last became empty (null while anything is allocated in it).</summary>
    public TimeSpan? EmptySince { get; private set; }

    public int Exports { get; private set; }

    public long FreeBytes
    {
        get
        {
            lock (Lock)
            {
                return _extents.FreeBytes;
            }
        }
    }

    /// <summary>An offset for <paramref name="rounded"/> bytes, or -1 (no room, or not active).</summary>
    public long TryAllocate(long rounded)
    {
        lock (Lock)
        {
            if (State != SlabState.Active)
            {
                return -1;
            }

            long offset = _extents.TryAllocate(rounded);
            if (offset >= 0)
            {
                EmptySince = null;
            }

            return offset;
        }
    }

    public void Free(long offset, long rounded, TimeSpan now)
    {
        lock (Lock)
        {
            _extents.Free(offset, rounded);
            if (_extents.IsEmpty)
            {
                EmptySince = now;
            }
        }
    }

    /// <summary>A cleared slab starts serving allocations (empty since <paramref name="now"/>).</summary>
    public void Activate(TimeSpan now)
    {
        lock (Lock)
        {
            if (State == SlabState.Clearing)
            {
                State = SlabState.Active;
            }
        }

        MarkEmptySince(now);
    }

    /// <summary>True when it has importers (it was opened and not every importer closed it).</summary>
    public bool HasImporters
    {
        get
        {
            lock (Lock)
            {
                return _importers.Count > 0;
            }
        }
    }

    public void MarkEmptySince(TimeSpan now)
    {
        lock (Lock)
        {
            EmptySince ??= _extents.IsEmpty ? now : null;
        }
    }

    /// <summary>Exports the slab once; records <paramref name="importer"/> as having it open.</summary>
    public IpcMemoryHandle Open(LeaseHolder importer)
    {
        lock (Lock)
        {
            if (State != SlabState.Active)
            {
                throw new PoolException(PoolError.Stale, $"Slab {Id} (generation {Generation}) is {State.ToString().ToLowerInvariant()}.");
            }

            if (_handle is null)
            {
                _handle = Buffer.Device.Export(Buffer);
                Exports++;
            }

            _importers.Add(importer);
            return _handle;
        }
    }

    /// <summary>Forgets <paramref name="importer"/>; true when the slab is retiring and no importer is left.</summary>
    public bool Close(LeaseHolder importer)
    {
        lock (Lock)
        {
            _importers.Remove(importer);
            return State == SlabState.Retiring && _importers.Count == 0;
        }
    }

    /// <summary>Stops allocations; true when it can be freed now (no importer has it open).</summary>
    public bool BeginRetire(out LeaseHolder[] importers)
    {
        lock (Lock)
        {
            State = SlabState.Retiring;
            importers = [.. _importers];
            return importers.Length == 0;
        }
    }

    public SlabInfo Describe()
    {
        lock (Lock)
        {
            return new SlabInfo(Id, Generation, Capacity, _extents.FreeBytes, _extents.LargestFree, State, [.. _importers], Exports, Partition);
        }
    }

    /// <summary>Free bytes and the largest free range: what statistics and messages need, O(log n).</summary>
    public (long Free, long Largest) FreeSpace()
    {
        lock (Lock)
        {
            return (_extents.FreeBytes, _extents.LargestFree);
        }
    }

    /// <summary>Free bytes and every free range in address order (for the invariant walk only: it copies and sorts them).</summary>
    public (long Free, IReadOnlyList<(long Offset, long Size)> Extents) FreeRanges()
    {
        lock (Lock)
        {
            return (_extents.FreeBytes, _extents.FreeExtents().ToArray());
        }
    }
}
