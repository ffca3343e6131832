namespace FaaSTube.Memory;

/// <summary>
/// A range of one slab leased to a client whole (an arena range: one <see cref="PoolBlock"/>, never
/// evicted) and the pieces carved out of it, each a block of its own. The pool keeps the
/// authoritative map of the live pieces: a carve is refused unless it lies inside the range, on the
/// alignment, and overlaps no live piece, so a client can only ever name memory the range still has
/// free. Who owns a byte of the range is always one of three: a live piece, the range (while leased),
/// or the slab (once the range was returned).
/// <para>Accounting (one source per number): the partition's quota is charged the whole range when it
/// is leased; a piece carved from a leased range adds nothing (its bytes are the range's); when the
/// range is returned, the bytes no live piece holds go back to the slab and to the quota at once, and
/// each piece that outlives it gives its own bytes back to both when it goes. The pool's
/// <see cref="PoolStatistics.ArenaLeasedBytes"/> is the ranges leased now, and
/// <see cref="PoolStatistics.ArenaUnusedBytes"/> the part of them no live piece holds.</para>
/// <para>Locks: the pool calls in under a block's <see cref="PoolBlock.Sync"/> (the range's when it
/// is returned, a piece's when it goes) and this takes only its own lock, then the slab's: never a
/// block's lock, so no order between blocks is needed.</para>
/// </summary>
internal sealed class CarvedRange
{
    /// <summary>The most pieces one range holds at once (each a block the node remembers): bounds what one range makes the pool track.</summary>
    public const int MaxPieces = 4096;

    private readonly Lock _lock = new();
    private readonly SortedSet<Piece> _pieces = new(ByOffset.Instance);
    private readonly ArenaCounters _counters;
    private bool _returned;

    public CarvedRange(Slab slab, long baseOffset, long length, PartitionUsage? usage, ArenaCounters counters)
    {
        Slab = slab;
        BaseOffset = baseOffset;
        Length = length;
        Usage = usage;
        _counters = counters;
        counters.Leased(length);
    }

    /// <summary>The slab it lies in (a range is never moved: it is leased whole and never evicted).</summary>
    public Slab Slab { get; }

    /// <summary>Where it starts in the slab.</summary>
    public long BaseOffset { get; }

    /// <summary>Its bytes (a multiple of the alignment).</summary>
    public long Length { get; }

    /// <summary>The partition's quota counter, charged for the whole range at its lease.</summary>
    public PartitionUsage? Usage { get; }

    /// <summary>False once the client returned it (or its session ended): for good.</summary>
    public bool IsLeased => !Volatile.Read(ref _returned);

    /// <summary>Live pieces now.</summary>
    public int PieceCount
    {
        get
        {
            lock (_lock)
            {
                return _pieces.Count;
            }
        }
    }

    /// <summary>
    /// Records a piece [<paramref name="offset"/>, +<paramref name="rounded"/>) of the range; refused
    /// (<see cref="PoolException"/>) when the range was returned, the piece is not aligned, not inside
    /// the range, overlaps a live piece, or the range holds <see cref="MaxPieces"/> already.
    /// </summary>
    public void Add(long offset, long rounded)
    {
        lock (_lock)
        {
            if (_returned)
            {
                throw new PoolException(PoolError.Stale, "The arena range was returned: nothing can be carved from it any more.");
            }

            if (rounded <= 0 || offset < 0 || offset % ExtentAllocator.Alignment != 0 || rounded > Length || offset > Length - rounded)
            {
                throw new PoolException(PoolError.OutOfBounds, $"A piece [{offset}, +{rounded}) is not inside the arena range of {Length} bytes (offsets are multiples of {ExtentAllocator.Alignment}).");
            }

            if (_pieces.Count >= MaxPieces)
            {
                throw new PoolException(PoolError.OutOfBounds, $"The arena range holds {MaxPieces} live pieces, the most one range may; return it and lease another.");
            }

            var before = _pieces.GetViewBetween(new Piece(long.MinValue, 0), new Piece(offset, 0));
            if (before.Count > 0 && before.Max is var left && left.Offset + left.Size > offset)
            {
                throw new PoolException(PoolError.OutOfBounds, $"A piece [{offset}, +{rounded}) overlaps the live piece [{left.Offset}, +{left.Size}) of the arena range.");
            }

            var after = _pieces.GetViewBetween(new Piece(offset, 0), new Piece(long.MaxValue, 0));
            if (after.Count > 0 && after.Min is var right && right.Offset < offset + rounded)
            {
                throw new PoolException(PoolError.OutOfBounds, $"A piece [{offset}, +{rounded}) overlaps the live piece [{right.Offset}, +{right.Size}) of the arena range.");
            }

            _pieces.Add(new Piece(offset, rounded));
            _counters.Carved(rounded);
        }
    }

    /// <summary>
    /// A piece's bytes leave the range: freed, or evicted (<paramref name="keepCharge"/>: the piece
    /// still exists, in the spill store, and keeps its quota charge). While the range is leased its
    /// bytes become the range's free space again; after, they go back to the slab.
    /// </summary>
    public void Gone(long offset, long rounded, bool keepCharge, TimeSpan now)
    {
        lock (_lock)
        {
            if (!_pieces.Remove(new Piece(offset, rounded)))
            {
                return; // never recorded (a carve refused before it was) or gone already
            }

            if (!_returned)
            {
                _counters.Uncarved(rounded); // the range's charge covers the space (a piece of a leased range is never evicted: keepCharge is false here)
                return;
            }

            Slab.Free(BaseOffset + offset, rounded, now);
            if (!keepCharge)
            {
                Usage?.Give(rounded);
            }
        }
    }

    /// <summary>
    /// The client gave the range back (or its session ended): every byte no live piece holds goes back
    /// to the slab and the quota now; the live pieces stay where they are, as blocks of their own.
    /// </summary>
    public void Return(TimeSpan now)
    {
        lock (_lock)
        {
            if (_returned)
            {
                return;
            }

            Volatile.Write(ref _returned, true);
            long at = 0, carved = 0, freed = 0;
            foreach (var piece in _pieces)
            {
                if (piece.Offset > at)
                {
                    Slab.Free(BaseOffset + at, piece.Offset - at, now);
                    freed += piece.Offset - at;
                }

                at = piece.Offset + piece.Size;
                carved += piece.Size;
            }

            if (Length > at)
            {
                Slab.Free(BaseOffset + at, Length - at, now);
                freed += Length - at;
            }

            Usage?.Give(freed);
            _counters.Returned(Length, carved);
        }
    }

    private readonly record struct Piece(long Offset, long Size);

    private sealed class ByOffset : IComparer<Piece>
    {
        public static readonly ByOffset Instance = new();

        public int Compare(Piece x, Piece y) => x.Offset.CompareTo(y.Offset);
    }
}

/// <summary>The pool's arena bytes: ranges leased now, and how much of them live pieces hold (read by <see cref="GpuMemoryPool.GetStatistics"/>).</summary>
internal sealed class ArenaCounters
{
    private long _leased, _carved;

    /// <summary>Bytes of the ranges leased to clients now.</summary>
    public long LeasedBytes => Interlocked.Read(ref _leased);

    /// <summary>Of <see cref="LeasedBytes"/>, the bytes no live piece holds.</summary>
    public long UnusedBytes => Math.Max(0, Interlocked.Read(ref _leased) - Interlocked.Read(ref _carved));

    public void Leased(long bytes) => Interlocked.Add(ref _leased, bytes);

    public void Carved(long bytes) => Interlocked.Add(ref _carved, bytes);

    public void Uncarved(long bytes) => Interlocked.Add(ref _carved, -bytes);

    /// <summary>A range of <paramref name="length"/> bytes went back with <paramref name="carved"/> of it still in live pieces.</summary>
    public void Returned(long length, long carved)
    {
        Interlocked.Add(ref _carved, -carved);
        Interlocked.Add(ref _leased, -length);
    }
}
