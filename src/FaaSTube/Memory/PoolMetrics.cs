using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace FaaSTube.Memory;

/// <summary>
/// The pool's instruments on the <c>FaaSTube</c> meter, tagged with the pool's device: gauges read
/// the live pools' <see cref="GpuMemoryPool.GetStatistics"/>; counters are added on the paths.
/// </summary>
internal static class PoolMetrics
{
    private static readonly ConcurrentDictionary<GpuMemoryPool, byte> Pools = new();

    public static readonly Counter<long> Allocations = Telemetry.Meter.CreateCounter<long>("faastube.pool.allocations", "{allocation}", "Blocks allocated");
    public static readonly Counter<long> Evictions = Telemetry.Meter.CreateCounter<long>("faastube.pool.evictions", "{block}", "Blocks evicted to the spill store");
    public static readonly Counter<long> EvictedBytes = Telemetry.Meter.CreateCounter<long>("faastube.pool.evicted_bytes", "By", "Bytes evicted to the spill store");
    public static readonly Counter<long> Restores = Telemetry.Meter.CreateCounter<long>("faastube.pool.restores", "{block}", "Blocks restored to the device");
    public static readonly Counter<long> RestoredBytes = Telemetry.Meter.CreateCounter<long>("faastube.pool.restored_bytes", "By", "Bytes restored to the device");

    static PoolMetrics()
    {
        Gauge("faastube.pool.reserved", "By", "Device memory held by the pool", s => s.ReservedBytes);
        Gauge("faastube.pool.in_use", "By", "Bytes in resident blocks", s => s.InUseBytes);
        Gauge("faastube.pool.free", "By", "Reserved bytes not in use", s => s.FreeBytes);
        Gauge("faastube.pool.slabs", "{slab}", "Slabs held", s => s.Slabs);
        Gauge("faastube.pool.spill_bytes", "By", "Bytes of evicted data in host memory and files", s => s.SpillHostBytes + s.SpillFileBytes);
    }

    public static void Register(GpuMemoryPool pool) => Pools.TryAdd(pool, 0);

    public static void Unregister(GpuMemoryPool pool) => Pools.TryRemove(pool, out _);

    public static KeyValuePair<string, object?> Tag(GpuMemoryPool pool) => new("faastube.device", pool.Device.Ordinal);

    private static void Gauge(string name, string unit, string description, Func<PoolStatistics, long> read) =>
        Telemetry.Meter.CreateObservableGauge(name, () => Pools.Keys.Select(p => new Measurement<long>(read(p.GetStatistics()), Tag(p))), unit, description);
}
