using System.Text.Json;
using System.Text.Json.Serialization;

namespace FaaSTube.Channels.Remote.Gateway;

/// <summary>
/// What the node tells the network gateway it starts: one line of JSON on the gateway's standard
/// input (never its command line or environment, which other users of the machine can read), the
/// same line on every restart. The gateway then keeps reading its input: its end is the node's
/// order to stop (or the node's death).
/// </summary>
internal sealed record GatewayConfig
{
    /// <summary>The node's Unix socket, which the gateway connects to once per remote client.</summary>
    public required string NodeSocket { get; init; }

    /// <summary>The node's process id: the gateway relays only to the process on <see cref="NodeSocket"/> that is this one, as its user (SO_PEERCRED).</summary>
    public required int NodePid { get; init; }

    /// <summary>The 32 bytes a <see cref="Protocol.Messages.GatewayHello"/> must carry (the node's proof that the connection is its gateway's).</summary>
    public required byte[] Key { get; init; }

    /// <summary><see cref="TubeNodeOptions.NetworkListen"/>, or the address the first gateway bound when it asked for port 0 (a restart keeps the port).</summary>
    public required string Listen { get; init; }

    public IReadOnlyDictionary<string, string>? UcxSettings { get; init; }

    public IReadOnlyDictionary<string, byte[]>? RemoteSecrets { get; init; }

    public int MaxRemoteSessions { get; init; }

    public int MaxRemoteHandshakes { get; init; }

    public int MaxRemoteSessionsPerWorkflow { get; init; }

    public int MaxSessionsPerUser { get; init; }

    public int MaxRequestsInFlight { get; init; }

    public int MaxFrameBytes { get; init; }

    public long MaxWindowBytes { get; init; }

    public TimeSpan HelloTimeout { get; init; }

    public TimeSpan RemoteIdleTimeout { get; init; }

    /// <summary><see cref="TubeNodeOptions.MaxPeerFetches"/>: the node's fetches the gateway runs at once.</summary>
    public int MaxPeerFetches { get; init; }

    /// <summary><see cref="TubeNodeOptions.PeerFetchTimeout"/>: the longest one fetch runs in the gateway.</summary>
    public TimeSpan PeerFetchTimeout { get; init; }

    /// <summary>How long the gateway waits for the node's answer to a relayed request (the longest wait the node may take, and a minute).</summary>
    public TimeSpan CallTimeout { get; init; }

    /// <summary><see cref="TubeNodeOptions.GatewayMemoryLimit"/>: what the gateway bounds itself to before it loads UCX (<see cref="GatewayMemory"/>).</summary>
    public required long MemoryLimit { get; init; }

    /// <summary>The node's options the network path reads, and where the gateway listens.</summary>
    public static GatewayConfig From(TubeNodeOptions o, string listen, byte[] key) => new()
    {
        NodeSocket = o.SocketPath ?? throw new InvalidOperationException("The network gateway needs the node's SocketPath."),
        NodePid = Environment.ProcessId,
        Key = key,
        Listen = listen,
        UcxSettings = o.UcxSettings,
        RemoteSecrets = o.RemoteSecrets,
        MaxRemoteSessions = o.MaxRemoteSessions,
        MaxRemoteHandshakes = o.MaxRemoteHandshakes,
        MaxRemoteSessionsPerWorkflow = o.MaxRemoteSessionsPerWorkflow,
        MaxSessionsPerUser = o.MaxSessionsPerUser,
        MaxRequestsInFlight = o.MaxRequestsInFlight,
        MaxFrameBytes = o.MaxFrameBytes,
        MaxWindowBytes = o.MaxWindowBytes,
        HelloTimeout = o.HelloTimeout,
        RemoteIdleTimeout = o.RemoteIdleTimeout,
        MaxPeerFetches = o.MaxPeerFetches,
        PeerFetchTimeout = o.PeerFetchTimeout,
        CallTimeout = (o.MaxPublishWait > o.LoadTimeout ? o.MaxPublishWait : o.LoadTimeout) + TimeSpan.FromMinutes(1),
        MemoryLimit = o.GatewayMemoryLimit,
    };

    /// <summary>The options the gateway's listener and sessions read (the rest keep their defaults and are not used there).</summary>
    public TubeNodeOptions ToOptions() => new()
    {
        SocketPath = NodeSocket,
        NetworkListen = Listen,
        UcxSettings = WithReusedAddress(UcxSettings),
        RemoteSecrets = RemoteSecrets,
        MaxRemoteSessions = MaxRemoteSessions,
        MaxRemoteHandshakes = MaxRemoteHandshakes,
        MaxRemoteSessionsPerWorkflow = MaxRemoteSessionsPerWorkflow,
        MaxSessionsPerUser = MaxSessionsPerUser,
        MaxRequestsInFlight = MaxRequestsInFlight,
        MaxFrameBytes = MaxFrameBytes,
        MaxWindowBytes = MaxWindowBytes,
        HelloTimeout = HelloTimeout,
        RemoteIdleTimeout = RemoteIdleTimeout,
    };

    /// <summary>
    /// The listener binds with SO_REUSEADDR (UCX's CM_REUSEADDR) unless the user said otherwise: a
    /// gateway started again after a death binds the same port at once, not after its predecessor's
    /// connections have left TIME_WAIT (a minute on Linux).
    /// </summary>
    private static Dictionary<string, string> WithReusedAddress(IReadOnlyDictionary<string, string>? settings)
    {
        var merged = new Dictionary<string, string>(settings ?? new Dictionary<string, string>(), StringComparer.Ordinal);
        merged.TryAdd("CM_REUSEADDR", "y");
        return merged;
    }

    public string ToJson() => JsonSerializer.Serialize(this, GatewayConfigJson.Default.GatewayConfig);

    public static GatewayConfig FromJson(string json) =>
        JsonSerializer.Deserialize(json, GatewayConfigJson.Default.GatewayConfig) ?? throw new InvalidDataException("The gateway's configuration line is empty.");
}

[JsonSerializable(typeof(GatewayConfig))]
internal sealed partial class GatewayConfigJson : JsonSerializerContext;
