namespace FaaSTube.Memory;

/// <summary>Options of one allocation.</summary>
public sealed record BlockOptions
{
    /// <summary>The function the data belongs to: the key of the pool's elastic sizing (default "default").</summary>
    public string Function { get; init; } = "default";

    /// <summary>The holder of the first lease (a session, a process; default: holder 0); a node releases all of a holder's leases when it goes.</summary>
    public LeaseHolder Holder { get; init; }

    /// <summary>When the data will be needed: its consumer's position in the request queue or an expected use time; larger is later. Null: unknown.</summary>
    public double? NextUse { get; init; }

    /// <summary>Never evict this block to the spill store (long-lived shared data such as model weights).</summary>
    public bool NeverEvict { get; init; }

    /// <summary>
    /// The isolation domain, e.g. the workflow: a slab holds blocks of one partition for its whole
    /// life, so whoever maps a slab can only ever see that partition's bytes. "" (the default) is
    /// node-internal memory that is never handed to clients.
    /// </summary>
    public string Partition { get; init; } = "";

    /// <summary>A cache entry from the start (a cached object's replica): charged to the partition's cache bound (<see cref="GpuPoolOptions.MaxPartitionCacheBytes"/>), not its quota.</summary>
    internal bool CacheEntry { get; init; }
}

/// <summary>
/// Intermediate data in a <see cref="GpuMemoryPool"/>: held by leases, resident on the device or
/// evicted to the spill store, never lost. Use it with <see cref="UseAsync"/> (which restores it if
/// needed and keeps it from being evicted while in use). It is freed at once when its last lease is
/// released and no use is open.
/// </summary>
public sealed class PoolBlock
{
    private readonly Lock _sync = new();
    private volatile bool _neverEvict;

    internal PoolBlock(GpuMemoryPool pool, long id, long length, long rounded, BlockOptions options, FunctionArrivals arrivals)
    {
        Pool = pool;
        Id = id;
        Length = length;
        Rounded = rounded;
        Function = options.Function;
        Partition = options.Partition;
        NextUse = options.NextUse;
        _neverEvict = options.NeverEvict;
        Arrivals = arrivals;
        Leases.Add(options.Holder);
    }

    /// <summary>The pool that holds it.</summary>
    public GpuMemoryPool Pool { get; }

    /// <summary>Unique in its pool, never reused.</summary>
    public long Id { get; }

    /// <summary>Length in bytes.</summary>
    public long Length { get; }

    /// <summary>The function it belongs to.</summary>
    public string Function { get; }

    /// <summary>Its isolation domain (<see cref="BlockOptions.Partition"/>): it only ever lives in slabs of this partition.</summary>
    public string Partition { get; }

    /// <summary>The eviction hint: larger is needed later; null is unknown (see <see cref="BlockOptions.NextUse"/>).</summary>
    public double? NextUse { get; set; }

    /// <summary>True when it may never be evicted (from allocation, or once exempted by the pool after the fact).</summary>
    public bool NeverEvict => _neverEvict;

    /// <summary>True while its bytes are on the device (false while evicted).</summary>
    public bool IsResident
    {
        get
        {
            lock (Sync)
            {
                return Slab is not null && !IsMoving;
            }
        }
    }

    /// <summary>True once its last lease was released and it was freed.</summary>
    public bool IsFreed
    {
        get
        {
            lock (Sync)
            {
                return Freed;
            }
        }
    }

    /// <summary>Number of leases held, over all holders.</summary>
    public int LeaseCount
    {
        get
        {
            lock (Sync)
            {
                return Leases.Total;
            }
        }
    }

    /// <summary>Makes the block resident (restoring it if evicted) and keeps it so until the use is disposed.</summary>
    /// <param name="cancellationToken">Cancels the wait for memory.</param>
    public ValueTask<BlockUse> UseAsync(CancellationToken cancellationToken = default) => Pool.UseAsync(this, cancellationToken);

    /// <summary>Adds a lease for <paramref name="holder"/> (a consumer that will read it).</summary>
    /// <param name="holder">The holder.</param>
    public void AddLease(LeaseHolder holder) => Pool.AddLease(this, holder);

    /// <inheritdoc/>
    public override string ToString() => $"block {Id} ({Length} bytes, {Function})";

    internal Lock Sync => _sync;

    /// <summary>Marks the block never to be evicted again; set under <see cref="Sync"/> by the pool.</summary>
    internal void MarkNeverEvict() => _neverEvict = true;

    internal long Rounded { get; }

    /// <summary>Its function's arrivals: told when the block goes (the function's live count).</summary>
    internal FunctionArrivals Arrivals { get; }

    internal Slab? Slab { get; set; }

    internal long Offset { get; set; }

    internal SpillStore.SpillEntry? Spill { get; set; }

    /// <summary>Its partition's quota counter, or its cache's once <see cref="InCache"/> (null for partition "", and for an arena range or a piece inside one: <see cref="CarvedRange"/> charges those), given back when it is freed; changed under <see cref="Sync"/>.</summary>
    internal PartitionUsage? Usage { get; set; }

    /// <summary>Charged to its partition's cache bound instead of its quota (<see cref="GpuMemoryPool.MoveToCache"/>).</summary>
    internal bool InCache { get; set; }

    /// <summary>Set on an arena range (a block leased to a client whole, never evicted): its carved pieces (<see cref="CarvedRange"/>).</summary>
    internal CarvedRange? Carving { get; set; }

    /// <summary>Set on a piece while its bytes lie in the arena range it was carved from (cleared when it is evicted out of it).</summary>
    internal CarvedRange? CarvedFrom { get; set; }

    /// <summary>Never evicted now: marked so, or a piece of an arena range its client still holds (its bytes are the client's range).</summary>
    internal bool Unevictable => _neverEvict || CarvedFrom is { IsLeased: true };

    /// <summary>
    /// Gives back the device range of a piece evicted out of its arena range (under <see cref="Sync"/>,
    /// by the mover): its bytes go where the range says; the piece, now in the spill store, keeps
    /// its quota charge unless it was freed meanwhile.
    /// </summary>
    internal void LeaveCarvedRangeLocked(TimeSpan now)
    {
        var range = CarvedFrom!;
        range.Gone(Offset - range.BaseOffset, Rounded, keepCharge: !Freed, now);
        CarvedFrom = null;
        Usage = Freed ? null : range.Usage;
    }

    internal bool IsMoving { get; set; }

    /// <summary>Set for a cacheable block (a named object's version or replica): evicted before any other, by value (<see cref="EvictionOrder"/>).</summary>
    internal CacheValue? Cache { get; set; }

    internal int Uses { get; set; }

    internal long LastUse { get; set; }

    internal bool Freed { get; set; }

    /// <summary>
    /// Gives back what the block holds, its device range or its spill entry (a freed block, or one
    /// freed while it moved); under <see cref="Sync"/>.
    /// </summary>
    internal void ReleaseStorageLocked(TimeSpan now)
    {
        if (Slab is { } slab)
        {
            if (Carving is { } range)
            {
                range.Return(now); // an arena range: the bytes no live piece holds go back
            }
            else if (CarvedFrom is { } from)
            {
                from.Gone(Offset - from.BaseOffset, Rounded, keepCharge: false, now); // a piece: back to its range, or to the slab once the range was returned
            }
            else
            {
                slab.Free(Offset, Rounded, now);
            }

            Slab = null;
        }

        Spill?.Dispose();
        Spill = null;
    }

    /// <summary>The leases by holder (a field: the table is a struct changed in place under <see cref="Sync"/>).</summary>
    internal LeaseTable Leases;
}

/// <summary>An open use of a resident block: its device memory and descriptor. Dispose to let it be evicted (or freed) again.</summary>
public sealed class BlockUse : IDisposable
{
    private int _disposed;

    internal BlockUse(PoolBlock block, Devices.DeviceMemory memory, BlockDescriptor descriptor)
    {
        Block = block;
        Memory = memory;
        Descriptor = descriptor;
    }

    /// <summary>The block.</summary>
    public PoolBlock Block { get; }

    /// <summary>Its bytes on the device (exactly <see cref="PoolBlock.Length"/> of them).</summary>
    public Devices.DeviceMemory Memory { get; }

    /// <summary>Where they are: what a node sends to a consumer with the slab mapped.</summary>
    internal BlockDescriptor Descriptor { get; }

    /// <summary>Ends the use.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Block.Pool.EndUse(Block);
        }
    }
}
