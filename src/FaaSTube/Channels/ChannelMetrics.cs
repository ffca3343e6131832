using System.Diagnostics.Metrics;

namespace FaaSTube.Channels;

/// <summary>The channels' instruments on the <c>FaaSTube</c> meter.</summary>
internal static class ChannelMetrics
{
    public static readonly Histogram<double> CallDuration = Telemetry.Meter.CreateHistogram<double>(
        "faastube.channel.call.duration", "ms", "Node-side latency of a call, by operation and data path");

    public static readonly Counter<long> Bytes = Telemetry.Meter.CreateCounter<long>(
        "faastube.channel.bytes", "By", "Bytes handed over, by path (zero-copy, peer-copy, host, restore)");

    public static readonly Counter<long> HostCopyBytes = Telemetry.Meter.CreateCounter<long>(
        "faastube.client.host_copy.bytes", "By", "Bytes a client copied on the host between caller memory and its window, by direction (to-window, from-window); a Put from window memory adds none");

    public static readonly UpDownCounter<int> Sessions = Telemetry.Meter.CreateUpDownCounter<int>(
        "faastube.channel.sessions", "{session}", "Connected clients");
}
