namespace FaaSTube.Memory;

/// <summary>
/// Arena ranges: a contiguous range of a slab leased to one holder whole (one block, charged to its
/// partition), and the pieces carved out of it, each a block of its own that lives on after the range
/// is returned (<see cref="CarvedRange"/> keeps the map of live pieces and says who owns each byte).
/// </summary>
public sealed partial class GpuMemoryPool
{
    /// <summary>The arrivals ranges are recorded in: no function's (ranges are held memory, not demand); never pruned.</summary>
    private readonly FunctionArrivals _rangeArrivals = new("(arena ranges)");

    /// <summary>
    /// Leases a range of <paramref name="bytes"/> (rounded to the alignment) in one slab of
    /// <see cref="BlockOptions.Partition"/> to <see cref="BlockOptions.Holder"/>: a block that is never
    /// evicted, charged whole to the partition's quota until it is returned (its holder's lease
    /// released), pieces carved out of it by <see cref="Carve"/>. As <see cref="AllocateAsync"/> otherwise.
    /// </summary>
    internal ValueTask<PoolBlock> LeaseRangeAsync(long bytes, BlockOptions options, CancellationToken cancellationToken) =>
        AllocateCoreAsync(bytes, options with { NeverEvict = true }, range: true, cancellationToken);

    /// <summary>
    /// A piece [<paramref name="offset"/>, +<paramref name="length"/>) of the arena range
    /// <paramref name="range"/>, a block of its own with one lease for <see cref="BlockOptions.Holder"/>:
    /// resident where it lies, not evicted while the range is leased, freed as any block (its bytes go
    /// back to the range, or to the slab once the range was returned).
    /// </summary>
    /// <exception cref="PoolException"><see cref="PoolError.Foreign"/>: not a range of this pool and
    /// partition; <see cref="PoolError.Stale"/>: returned or freed; <see cref="PoolError.OutOfBounds"/>:
    /// not aligned, not inside the range, or overlapping a live piece.</exception>
    internal PoolBlock Carve(PoolBlock range, long offset, long length, BlockOptions options)
    {
        ThrowIfDisposed();
        CheckOwn(range);
        ArgumentNullException.ThrowIfNull(options);
        if (range.Carving is not { } carving || range.Partition != options.Partition)
        {
            throw new PoolException(PoolError.Foreign, $"{range} is not an arena range of partition '{options.Partition}'.");
        }

        if (length <= 0 || length > carving.Length)
        {
            throw new PoolException(PoolError.OutOfBounds, $"A piece of {length} bytes does not fit an arena range of {carving.Length}.");
        }

        long rounded = ExtentAllocator.Round(length);
        lock (range.Sync)
        {
            ThrowIfFreed(range);
            carving.Add(offset, rounded); // the authoritative map: inside, aligned, no overlap
        }

        FunctionArrivals arrivals;
        try
        {
            arrivals = _target.Arrive(options.Function, rounded, Now);
        }
        catch
        {
            carving.Gone(offset, rounded, keepCharge: false, Now);
            throw;
        }

        var piece = new PoolBlock(this, Interlocked.Increment(ref _nextBlockId), length, rounded, options, arrivals)
        {
            CarvedFrom = carving,
            Slab = carving.Slab,
            Offset = carving.BaseOffset + offset,
            LastUse = _time.GetTimestamp(),
        };
        _blocks[piece.Id] = piece;
        HolderIndex(options.Holder).TryAdd(piece.Id, 0);
        _counters.Allocated();
        return piece;
    }

    private FunctionArrivals RangeArrivals(long rounded)
    {
        _rangeArrivals.TryArrive(rounded, Now); // its live count goes down as the range's block is freed (FunctionArrivals.Depart)
        return _rangeArrivals;
    }
}
