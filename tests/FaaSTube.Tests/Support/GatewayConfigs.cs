using FaaSTube.Channels.Remote.Gateway;

namespace FaaSTube.Tests.Support;

/// <summary>A network gateway's configuration for a gateway run alone (no node behind it): smallest limits, TCP only.</summary>
internal static class GatewayConfigs
{
    public static GatewayConfig Alone(long memoryLimit) => new()
    {
        NodeSocket = Path.Combine(Path.GetTempPath(), "no-node-here.sock"),
        NodePid = Environment.ProcessId,
        Key = new byte[32],
        Listen = "127.0.0.1:0",
        UcxSettings = new Dictionary<string, string> { ["TLS"] = "tcp" },
        MaxRemoteSessions = 1,
        MaxRemoteHandshakes = 1,
        MaxRemoteSessionsPerWorkflow = 1,
        MaxSessionsPerUser = 1,
        MaxRequestsInFlight = 1,
        MaxFrameBytes = 1 << 16,
        MaxWindowBytes = 1 << 20,
        HelloTimeout = TimeSpan.FromSeconds(1),
        RemoteIdleTimeout = TimeSpan.FromSeconds(30),
        CallTimeout = TimeSpan.FromSeconds(30),
        MemoryLimit = memoryLimit,
    };
}
