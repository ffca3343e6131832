using System.Diagnostics.Metrics;
using FaaSTube.Diagnostics;
using FaaSTube.Memory;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Memory;

/// <summary>The pool's counts are recorded once: what the meter's counters receive is what the statistics snapshot reads.</summary>
[TestClass]
public sealed class PoolCountersTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void The_meter_and_the_snapshot_read_the_same_counts()
    {
        var random = Seeds.Create(TestContext);
        using var meter = new Meter(Telemetry.Name); // a meter of this test's own: its measurements are ours alone
        var metrics = new PoolMetrics(meter);
        var measured = new Dictionary<string, long>(); // by instrument name and spill direction
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, meter) && instrument is Counter<long>)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            string key = instrument.Name;
            foreach (var tag in tags)
            {
                if (tag.Key == TelemetryTags.SpillDirection)
                {
                    key += "/" + tag.Value;
                }
            }

            lock (measured)
            {
                measured[key] = measured.GetValueOrDefault(key) + value;
            }
        });
        listener.Start();

        var counters = new PoolCounters(metrics, new(TelemetryTags.GpuIndex, 0));
        for (int i = 0; i < 500; i++)
        {
            switch (random.Next(3))
            {
                case 0:
                    counters.Allocated();
                    break;
                case 1:
                    counters.Moved(MoveDirection.ToHost, random.Next(1, 1 << 20));
                    break;
                default:
                    counters.Moved(MoveDirection.ToDevice, random.Next(1, 1 << 20));
                    break;
            }
        }

        lock (measured)
        {
            Assert.AreEqual(counters.Allocations, measured.GetValueOrDefault(metrics.Allocations.Name));
            Assert.AreEqual(counters.Evictions, measured.GetValueOrDefault(metrics.SpillOperations.Name + "/evict"));
            Assert.AreEqual(counters.EvictedBytes, measured.GetValueOrDefault(metrics.SpillIo.Name + "/evict"));
            Assert.AreEqual(counters.Restores, measured.GetValueOrDefault(metrics.SpillOperations.Name + "/restore"));
            Assert.AreEqual(counters.RestoredBytes, measured.GetValueOrDefault(metrics.SpillIo.Name + "/restore"));
        }

        Assert.IsTrue(counters.Allocations > 0 && counters.Evictions > 0 && counters.Restores > 0, "every kind was recorded");
    }
}
