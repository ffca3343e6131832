using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using FaaSTube.Diagnostics;

namespace FaaSTube.Transfers;

/// <summary>
/// The transfers' instruments on one <c>FaaSTube</c> meter, tagged with the GPU, the direction and
/// the scheduler's tenant. One instance per meter (<see cref="Of"/>); the lanes registered here are
/// read by the observable one.
/// </summary>
internal sealed class TransferMetrics
{
    private static readonly PerMeter<TransferMetrics> ByMeter = new(static m => new TransferMetrics(m));
    private readonly ConcurrentDictionary<TransferLane, int> _lanes = new();

    /// <summary>Creates the instruments on <paramref name="meter"/>; use <see cref="Of"/> to share them.</summary>
    public TransferMetrics(Meter meter)
    {
        Io = meter.CreateCounter<long>("faastube.transfer.io", "By", "Bytes moved between host and GPU, by direction (its rate is the lane's or tenant's bytes/s)");
        Duration = meter.CreateHistogram("faastube.transfer.duration", "s", "How long a transfer took from its submission to its last chunk",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets.Seconds });
        DeadlineMisses = meter.CreateCounter<long>("faastube.transfer.deadline_misses", "{transfer}", "Transfers that finished after their SLO less compute time");
        meter.CreateObservableUpDownCounter(
            "faastube.transfer.active_transfers",
            () => _lanes.Select(l => new Measurement<int>(l.Key.QueueDepth, new(TelemetryTags.GpuIndex, l.Value), new(TelemetryTags.TransferDirection, Direction(l.Key.Direction)))),
            "{transfer}",
            "Transfers submitted and not finished (queued or running), by GPU and direction");
    }

    public Counter<long> Io { get; }

    public Histogram<double> Duration { get; }

    public Counter<long> DeadlineMisses { get; }

    /// <summary>The instruments on <paramref name="meter"/>, created once per meter.</summary>
    public static TransferMetrics Of(Meter meter) => ByMeter.Of(meter);

    /// <summary>The instruments on the <c>FaaSTube</c> meter of <paramref name="meterFactory"/> (null: the process-wide meter).</summary>
    public static TransferMetrics For(IMeterFactory? meterFactory) => Of(Telemetry.Meter(meterFactory));

    public void Register(TransferLane lane, int device) => _lanes[lane] = device;

    public void Unregister(TransferLane lane) => _lanes.TryRemove(lane, out _);

    /// <summary>The <c>faastube.transfer.direction</c> of a lane.</summary>
    public static string Direction(LaneDirection direction) => direction == LaneDirection.HostToDevice ? "host_to_device" : "device_to_host";
}
