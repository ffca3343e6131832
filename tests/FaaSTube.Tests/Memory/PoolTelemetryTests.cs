using System.Diagnostics.Metrics;
using FaaSTube.Diagnostics;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using FaaSTube.Memory;
using FaaSTube.Tests.Support;
using static FaaSTube.Tests.Support.PoolHarness;

namespace FaaSTube.Tests.Memory;

[TestClass]
public sealed class PoolTelemetryTests
{
    /// <summary>
    /// The pool's instruments after an allocation that evicts another: names, units, attributes and
    /// values (at least this pool's: pools of tests running alongside report on the same meter, on GPU 0 too).
    /// </summary>
    [TestMethod]
    public async Task The_FaaSTube_meter_reports_the_snapshot_numbers()
    {
        await using var h = new PoolHarness(o => o.MaxBytes = MiB);
        var meter = Telemetry.Meter(null);
        using var allocations = new MetricCollector<long>(meter, "faastube.pool.allocations");
        using var spillOperations = new MetricCollector<long>(meter, "faastube.pool.spill.operations");
        using var spillIo = new MetricCollector<long>(meter, "faastube.pool.spill.io");
        using var usage = new MetricCollector<long>(meter, "faastube.pool.memory.usage");
        using var slabs = new MetricCollector<long>(meter, "faastube.pool.slab.count");
        using var spillUsage = new MetricCollector<long>(meter, "faastube.pool.spill.usage");

        await h.Pool.AllocateAsync(MiB);
        await h.Pool.AllocateAsync(1000); // evicts the first
        var stats = h.Pool.GetStatistics();
        Assert.AreEqual(2L, stats.Allocations);
        Assert.AreEqual(1L, stats.Evictions);
        Assert.AreEqual(MiB, stats.EvictedBytes);
        Assert.AreEqual(MiB, stats.ReservedBytes);
        Assert.AreEqual(1024L, stats.InUseBytes);
        Assert.AreEqual(MiB - 1024, stats.FreeBytes);
        Assert.AreEqual(MiB, stats.SpillHostBytes);

        foreach (var observable in new[] { usage, slabs, spillUsage })
        {
            observable.RecordObservableInstruments(); // each collector listens on its own
        }

        Assert.AreEqual("{allocation}", allocations.Instrument!.Unit);
        Assert.IsGreaterThanOrEqualTo(2L, allocations.GetMeasurementSnapshot().Where(m => m.ContainsTags(GpuZero)).Sum(m => m.Value));
        Assert.AreEqual("By", spillIo.Instrument!.Unit);
        Assert.IsGreaterThanOrEqualTo(MiB, spillIo.GetMeasurementSnapshot().Where(m => m.ContainsTags(GpuZero, new(TelemetryTags.SpillDirection, "evict"))).Sum(m => m.Value));
        Assert.IsGreaterThanOrEqualTo(1L, spillOperations.GetMeasurementSnapshot().Where(m => m.ContainsTags(GpuZero, new(TelemetryTags.SpillDirection, "evict"))).Sum(m => m.Value));

        Assert.IsInstanceOfType<ObservableUpDownCounter<long>>(usage.Instrument);
        Assert.AreEqual("By", usage.Instrument!.Unit);
        var states = usage.GetMeasurementSnapshot().Where(m => m.ContainsTags(GpuZero)).ToList();
        CollectionAssert.IsSubsetOf(new[] { "in_use", "free" }, states.Select(m => (string)m.Tags[TelemetryTags.MemoryState]!).Distinct().ToList());
        Assert.IsTrue(states.Any(m => m.Value == 1024 && m.MatchesTags(GpuZero, new(TelemetryTags.MemoryState, "in_use"))), "this pool's bytes in use");
        Assert.IsTrue(states.Any(m => m.Value == MiB - 1024 && m.MatchesTags(GpuZero, new(TelemetryTags.MemoryState, "free"))), "this pool's free bytes");
        Assert.IsTrue(slabs.GetMeasurementSnapshot().Any(m => m.Value == 1 && m.MatchesTags(GpuZero)), "this pool's one slab");
        Assert.AreEqual("{slab}", slabs.Instrument!.Unit);
        Assert.IsTrue(spillUsage.GetMeasurementSnapshot().Any(m => m.Value == MiB && m.MatchesTags(GpuZero, new(TelemetryTags.SpillTier, "host"))), "this pool's evicted block in host memory");
    }

    private static readonly KeyValuePair<string, object?> GpuZero = new(TelemetryTags.GpuIndex, 0);

    [TestMethod]
    public async Task Fragmentation_is_reported()
    {
        await using var h = new PoolHarness();
        var blocks = new List<PoolBlock>();
        for (int i = 0; i < 4; i++)
        {
            blocks.Add(await h.Pool.AllocateAsync(256 << 10));
        }

        Assert.AreEqual(0.0, h.Pool.GetStatistics().Fragmentation);
        h.Pool.Release(blocks[0], default);
        h.Pool.Release(blocks[2], default);

        Assert.AreEqual(0.5, h.Pool.GetStatistics().Fragmentation, 1e-9, "two separate 256 KiB holes: the largest is half the free memory");
    }
}
