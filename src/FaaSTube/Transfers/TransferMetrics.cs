using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace FaaSTube.Transfers;

/// <summary>The transfers' instruments on the <c>FaaSTube</c> meter, tagged with device, lane and tenant.</summary>
internal static class TransferMetrics
{
    private static readonly ConcurrentDictionary<TransferLane, int> Lanes = new();

    public static readonly Counter<long> Bytes = Telemetry.Meter.CreateCounter<long>(
        "faastube.transfer.bytes", "By", "Bytes moved between host and GPU (its rate is the lane's or tenant's bytes/s)");

    public static readonly Counter<long> DeadlineMisses = Telemetry.Meter.CreateCounter<long>(
        "faastube.transfer.deadline_misses", "{transfer}", "Transfers that finished after SLO - compute time");

    static TransferMetrics()
    {
        Telemetry.Meter.CreateObservableGauge(
            "faastube.transfer.queue_depth",
            () => Lanes.Select(l => new Measurement<int>(l.Key.QueueDepth, new("faastube.device", l.Value), new("faastube.lane", Name(l.Key.Direction)))),
            "{transfer}",
            "Transfers submitted and not finished, per lane");
    }

    public static void Register(TransferLane lane, int device) => Lanes[lane] = device;

    public static void Unregister(TransferLane lane) => Lanes.TryRemove(lane, out _);

    public static string Name(LaneDirection direction) => direction == LaneDirection.HostToDevice ? "h2d" : "d2h";
}
