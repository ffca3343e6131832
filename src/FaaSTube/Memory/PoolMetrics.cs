using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using FaaSTube.Diagnostics;

namespace FaaSTube.Memory;

/// <summary>
/// The pools' instruments on one <c>FaaSTube</c> meter, each measurement tagged with its pool's GPU
/// (<c>faastube.gpu.index</c>). The observable ones read the pools registered here
/// (<see cref="GpuMemoryPool.GetStatistics"/>); the counters are added on the pool's paths. One
/// instance per meter (<see cref="Of"/>), so a process with many pools has each instrument once.
/// </summary>
internal sealed class PoolMetrics
{
    private static readonly PerMeter<PoolMetrics> ByMeter = new(static m => new PoolMetrics(m));
    private readonly ConcurrentDictionary<GpuMemoryPool, byte> _pools = new();

    /// <summary>Creates the instruments on <paramref name="meter"/>; use <see cref="Of"/> to share them.</summary>
    public PoolMetrics(Meter meter)
    {
        Allocations = meter.CreateCounter<long>("faastube.pool.allocations", "{allocation}", "Blocks allocated");
        SpillOperations = meter.CreateCounter<long>("faastube.pool.spill.operations", "{block}", "Blocks moved between the device and the spill store, by direction (evict, restore)");
        SpillIo = meter.CreateCounter<long>("faastube.pool.spill.io", "By", "Bytes moved between the device and the spill store, by direction (evict, restore)");
        meter.CreateObservableUpDownCounter("faastube.pool.memory.usage", () => Observe(s => [(s.InUseBytes, "in_use"), (s.FreeBytes, "free")], TelemetryTags.MemoryState),
            "By", "Device memory the pool reserved, by state: in_use (resident blocks) and free (reserved, not in use); their sum is what it reserved");
        meter.CreateObservableUpDownCounter("faastube.pool.slab.count", () => Observe(s => [(s.Slabs, null)], null), "{slab}", "Slabs the pool holds (retiring ones included)");
        meter.CreateObservableUpDownCounter("faastube.pool.spill.usage", () => Observe(s => [(s.SpillHostBytes, "host"), (s.SpillFileBytes, "file")], TelemetryTags.SpillTier),
            "By", "Evicted data held outside the device, by tier: host (memory) and file");
    }

    public Counter<long> Allocations { get; }

    public Counter<long> SpillOperations { get; }

    public Counter<long> SpillIo { get; }

    /// <summary>The instruments on <paramref name="meter"/>, created once per meter.</summary>
    public static PoolMetrics Of(Meter meter) => ByMeter.Of(meter);

    /// <summary>The instruments on the <c>FaaSTube</c> meter of <paramref name="meterFactory"/> (null: the process-wide meter).</summary>
    public static PoolMetrics For(IMeterFactory? meterFactory) => Of(Telemetry.Meter(meterFactory));

    public void Register(GpuMemoryPool pool) => _pools.TryAdd(pool, 0);

    public void Unregister(GpuMemoryPool pool) => _pools.TryRemove(pool, out _);

    public static KeyValuePair<string, object?> Tag(GpuMemoryPool pool) => new(TelemetryTags.GpuIndex, pool.Device.Ordinal);

    /// <summary>One eviction (<paramref name="evict"/>) or restore of <paramref name="bytes"/>.</summary>
    public void RecordMove(KeyValuePair<string, object?> pool, long bytes, bool evict)
    {
        KeyValuePair<string, object?> direction = new(TelemetryTags.SpillDirection, evict ? "evict" : "restore");
        SpillOperations.Add(1, pool, direction);
        SpillIo.Add(bytes, pool, direction);
    }

    /// <summary>The span of one eviction (<paramref name="evict"/>) or restore's copy: internal work, under the span of the request that caused it.</summary>
    public static Activity? StartMove(int gpuIndex, long bytes, bool evict)
    {
        var span = Telemetry.ActivitySource.StartActivity(evict ? "faastube.pool.evict" : "faastube.pool.restore", ActivityKind.Internal);
        span?.SetTag(TelemetryTags.GpuIndex, gpuIndex);
        span?.SetTag(TelemetryTags.MoveSize, bytes);
        return span;
    }

    private IEnumerable<Measurement<long>> Observe(Func<PoolStatistics, (long Value, string? State)[]> read, string? stateTag)
    {
        foreach (var pool in _pools.Keys)
        {
            foreach (var (value, state) in read(pool.GetStatistics()))
            {
                yield return stateTag is null ? new(value, Tag(pool)) : new(value, Tag(pool), new(stateTag, state));
            }
        }
    }
}
