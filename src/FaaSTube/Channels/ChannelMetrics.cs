using System.Diagnostics.Metrics;
using FaaSTube.Diagnostics;

namespace FaaSTube.Channels;

/// <summary>The node's and the clients' instruments on one <c>FaaSTube</c> meter; one instance per meter (<see cref="Of"/>).</summary>
internal sealed class ChannelMetrics
{
    private static readonly PerMeter<ChannelMetrics> ByMeter = new(static m => new ChannelMetrics(m));

    /// <summary>Creates the instruments on <paramref name="meter"/>; use <see cref="Of"/> to share them.</summary>
    public ChannelMetrics(Meter meter)
    {
        var seconds = new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets.Seconds };
        RequestDuration = meter.CreateHistogram("faastube.node.request.duration", "s",
            "How long the node took to serve a request, by operation, data path and error", advice: seconds);
        ActiveRequests = meter.CreateUpDownCounter<long>("faastube.node.active_requests", "{request}", "Requests the node is serving now, by operation");
        ActiveSessions = meter.CreateUpDownCounter<long>("faastube.node.active_sessions", "{session}", "Clients connected to the node now");
        NodeIo = meter.CreateCounter<long>("faastube.node.io", "By",
            "Bytes the node handed over, by data path and direction (receive: a Put's parts; transmit: a Get)");
        ClientDuration = meter.CreateHistogram("faastube.client.operation.duration", "s",
            "How long a client call took, by operation, data path and error", advice: seconds);
        HostCopyIo = meter.CreateCounter<long>("faastube.client.host_copy.io", "By",
            "Bytes a client copied on the host between caller memory and its window, by direction (to_window, from_window); a Put from window memory adds none");
    }

    public Histogram<double> RequestDuration { get; }

    public UpDownCounter<long> ActiveRequests { get; }

    public UpDownCounter<long> ActiveSessions { get; }

    public Counter<long> NodeIo { get; }

    public Histogram<double> ClientDuration { get; }

    public Counter<long> HostCopyIo { get; }

    /// <summary>The instruments on <paramref name="meter"/>, created once per meter.</summary>
    public static ChannelMetrics Of(Meter meter) => ByMeter.Of(meter);

    /// <summary>The instruments on the <c>FaaSTube</c> meter of <paramref name="meterFactory"/> (null: the process-wide meter).</summary>
    public static ChannelMetrics For(IMeterFactory? meterFactory) => Of(Telemetry.Meter(meterFactory));
}
