using System.Diagnostics.Metrics;
using FaaSTube.Memory;
using FaaSTube.Tests.Support;
using static FaaSTube.Tests.Support.PoolHarness;

namespace FaaSTube.Tests.Memory;

[TestClass]
public sealed class PoolTelemetryTests
{
    [TestMethod]
    public async Task The_FaaSTube_meter_reports_the_snapshot_numbers()
    {
        using var h = new PoolHarness(o => o.MaxBytes = MiB);
        var measured = new Dictionary<string, long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == Telemetry.Name && instrument.Name.StartsWith("faastube.pool.", StringComparison.Ordinal))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            lock (measured)
            {
                // Pools of tests running alongside report too: gauges keep the largest value, counters the sum.
                if (instrument is ObservableGauge<long>)
                {
                    measured[instrument.Name] = Math.Max(measured.GetValueOrDefault(instrument.Name), value);
                }
                else
                {
                    measured[instrument.Name] = measured.GetValueOrDefault(instrument.Name) + value;
                }
            }
        });
        listener.Start();

        await h.Pool.AllocateAsync(MiB);
        await h.Pool.AllocateAsync(1000); // evicts the first
        listener.RecordObservableInstruments();

        var stats = h.Pool.GetStatistics();
        Assert.AreEqual(2L, stats.Allocations);
        Assert.AreEqual(1L, stats.Evictions);
        Assert.AreEqual(MiB, stats.EvictedBytes);
        Assert.AreEqual(MiB, stats.ReservedBytes);
        Assert.AreEqual(1024L, stats.InUseBytes);
        Assert.AreEqual(MiB - 1024, stats.FreeBytes);
        Assert.AreEqual(MiB, stats.SpillHostBytes);
        lock (measured)
        {
            Assert.IsGreaterThanOrEqualTo(2L, measured["faastube.pool.allocations"]);
            Assert.IsGreaterThanOrEqualTo(MiB, measured["faastube.pool.evicted_bytes"]);
            Assert.IsGreaterThanOrEqualTo(MiB, measured["faastube.pool.reserved"]);
            Assert.IsGreaterThanOrEqualTo(MiB, measured["faastube.pool.spill_bytes"]);
            Assert.IsTrue(measured.ContainsKey("faastube.pool.slabs"));
        }
    }

    [TestMethod]
    public async Task Fragmentation_is_reported()
    {
        using var h = new PoolHarness();
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
