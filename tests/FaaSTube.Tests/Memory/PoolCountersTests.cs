using System.Diagnostics.Metrics;
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
        const int Device = 424_242; // a device no other test's pool reports: its measurements are ours alone
        var measured = new Dictionary<string, long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == Telemetry.Name && instrument is Counter<long>)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag is { Key: "faastube.device", Value: Device })
                {
                    lock (measured)
                    {
                        measured[instrument.Name] = measured.GetValueOrDefault(instrument.Name) + value;
                    }
                }
            }
        });
        listener.Start();

        var counters = new PoolCounters(new("faastube.device", Device));
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
            Assert.AreEqual(counters.Allocations, measured.GetValueOrDefault(PoolMetrics.Allocations.Name));
            Assert.AreEqual(counters.Evictions, measured.GetValueOrDefault(PoolMetrics.Evictions.Name));
            Assert.AreEqual(counters.EvictedBytes, measured.GetValueOrDefault(PoolMetrics.EvictedBytes.Name));
            Assert.AreEqual(counters.Restores, measured.GetValueOrDefault(PoolMetrics.Restores.Name));
            Assert.AreEqual(counters.RestoredBytes, measured.GetValueOrDefault(PoolMetrics.RestoredBytes.Name));
        }

        Assert.IsTrue(counters.Allocations > 0 && counters.Evictions > 0 && counters.Restores > 0, "every kind was recorded");
    }
}
