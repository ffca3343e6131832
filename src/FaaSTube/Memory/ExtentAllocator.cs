namespace FaaSTube.Memory;

/// <summary>
/// Sub-allocation inside one slab: best fit over free extents, coalesced on free.
/// <para>
/// Why best fit and not a buddy system or size classes: a buddy allocator rounds every request
/// to a power of two (a 33 MiB tensor takes 64 MiB) and cannot use a free range that straddles
/// a buddy boundary, and fixed size classes strand memory in the wrong class; intermediate data
/// in these workflows ranges from KiB to hundreds of MiB. Best fit with coalescing finds any
/// contiguous free range that is large enough, so a request that fits in a slab's free space is
/// never refused because of bookkeeping (the rule), and it wastes at most the 256-byte
/// alignment per allocation. The size index is a balanced tree (best fit in O(log n), n = free
/// extents of one slab); neighbours for coalescing are found by hash on their start and end
/// (O(1), no allocation on free). All under the slab's own lock (no global lock on the common path).
/// </para>
/// Not thread-safe: the owning slab locks.
/// </summary>
internal sealed class ExtentAllocator
{
    public const long Alignment = 256;

    private readonly SortedSet<Extent> _bySize = new(BySize.Instance);
    private readonly Dictionary<long, long> _sizeByStart = [];
    private readonly Dictionary<long, long> _startByEnd = [];

    public ExtentAllocator(long capacity)
    {
        if (capacity <= 0 || capacity % Alignment != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"A slab's capacity must be a positive multiple of {Alignment}.");
        }

        Capacity = capacity;
        Add(new Extent(0, capacity));
        FreeBytes = capacity;
    }

    public long Capacity { get; }

    public long FreeBytes { get; private set; }

    public long LargestFree => _bySize.Count == 0 ? 0 : _bySize.Max.Size;

    public int FreeExtentCount => _sizeByStart.Count;

    public bool IsEmpty => FreeBytes == Capacity;

    /// <summary>The largest request <see cref="Round"/> accepts (its rounded size is still a positive long).</summary>
    public const long MaxRoundable = long.MaxValue & ~(Alignment - 1);

    /// <summary>
    /// Rounds a request up to the alignment. Callers validate sizes first (the pool refuses anything
    /// larger than the device with <see cref="PoolError.TooLarge"/>); beyond <see cref="MaxRoundable"/>
    /// this throws instead of wrapping to a negative size.
    /// </summary>
    public static long Round(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bytes, MaxRoundable);
        return (bytes + Alignment - 1) & ~(Alignment - 1);
    }

    /// <summary>Takes <paramref name="bytes"/> (already rounded) from the smallest free extent that holds it; -1 when none does.</summary>
    public long TryAllocate(long bytes)
    {
        if (bytes > LargestFree)
        {
            return -1;
        }

        var fit = _bySize.GetViewBetween(new Extent(0, bytes), new Extent(long.MaxValue, long.MaxValue)).Min;
        Remove(fit);
        if (fit.Size > bytes)
        {
            Add(new Extent(fit.Offset + bytes, fit.Size - bytes));
        }

        FreeBytes -= bytes;
        return fit.Offset;
    }

    /// <summary>Returns [offset, offset + bytes) and merges it with free neighbours.</summary>
    public void Free(long offset, long bytes)
    {
        var merged = new Extent(offset, bytes);
        if (_startByEnd.TryGetValue(offset, out long leftStart))
        {
            var left = new Extent(leftStart, offset - leftStart);
            Remove(left);
            merged = new Extent(left.Offset, left.Size + merged.Size);
        }

        if (_sizeByStart.TryGetValue(offset + bytes, out long rightSize))
        {
            Remove(new Extent(offset + bytes, rightSize));
            merged = new Extent(merged.Offset, merged.Size + rightSize);
        }

        Add(merged);
        FreeBytes += bytes;
    }

    /// <summary>The free extents in address order (for invariant checks and fragmentation reports).</summary>
    public IEnumerable<(long Offset, long Size)> FreeExtents() => _sizeByStart.OrderBy(e => e.Key).Select(e => (e.Key, e.Value));

    private void Add(Extent e)
    {
        _bySize.Add(e);
        _sizeByStart.Add(e.Offset, e.Size);
        _startByEnd.Add(e.Offset + e.Size, e.Offset);
    }

    private void Remove(Extent e)
    {
        _bySize.Remove(e);
        _sizeByStart.Remove(e.Offset);
        _startByEnd.Remove(e.Offset + e.Size);
    }

    private readonly record struct Extent(long Offset, long Size);

    private sealed class BySize : IComparer<Extent>
    {
        public static readonly BySize Instance = new();

        public int Compare(Extent x, Extent y)
        {
            int c = x.Size.CompareTo(y.Size);
            return c != 0 ? c : x.Offset.CompareTo(y.Offset);
        }
    }
}
