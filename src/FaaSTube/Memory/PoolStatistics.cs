namespace FaaSTube.Memory;

/// <summary>A snapshot of a pool: the same numbers its <c>FaaSTube</c> meter reports.</summary>
/// <param name="ReservedBytes">Device memory the pool holds (all slabs).</param>
/// <param name="InUseBytes">Bytes in resident blocks (rounded to the alignment).</param>
/// <param name="FreeBytes">Reserved minus in use.</param>
/// <param name="Slabs">Slabs held (retiring ones included).</param>
/// <param name="Blocks">Live blocks, resident or evicted.</param>
/// <param name="Allocations">Allocations since the pool started.</param>
/// <param name="Evictions">Blocks evicted to the spill store.</param>
/// <param name="EvictedBytes">Bytes evicted.</param>
/// <param name="Restores">Blocks brought back to the device.</param>
/// <param name="RestoredBytes">Bytes restored.</param>
/// <param name="SpillHostBytes">Bytes in host spill memory now.</param>
/// <param name="SpillFileBytes">Bytes in spill files now.</param>
/// <param name="Fragmentation">1 - largest free extent / free bytes (0 when all free memory is one extent).</param>
/// <param name="TargetBytes">What the elastic rule wants reserved now: the sum of active functions' reservations (at least the floor), plus <see cref="ArenaUnusedBytes"/> (memory clients hold ready that the pool cannot give back while they do).</param>
public readonly record struct PoolStatistics(
    long ReservedBytes,
    long InUseBytes,
    long FreeBytes,
    int Slabs,
    int Blocks,
    long Allocations,
    long Evictions,
    long EvictedBytes,
    long Restores,
    long RestoredBytes,
    long SpillHostBytes,
    long SpillFileBytes,
    double Fragmentation,
    long TargetBytes)
{
    /// <summary>
    /// Bytes of the arena ranges leased to clients now (each one block, counted whole in
    /// <see cref="InUseBytes"/> and in its partition's quota from its lease to its return).
    /// </summary>
    public long ArenaLeasedBytes { get; init; }

    /// <summary>Of <see cref="ArenaLeasedBytes"/>, the bytes no live piece holds: leased but unused, ready for the clients' next allocations (also counted in <see cref="TargetBytes"/>).</summary>
    public long ArenaUnusedBytes { get; init; }
}
