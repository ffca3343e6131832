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
/// <param name="TargetBytes">What the elastic rule wants reserved now (sum of active functions' reservations, at least the floor).</param>
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
    long TargetBytes);
