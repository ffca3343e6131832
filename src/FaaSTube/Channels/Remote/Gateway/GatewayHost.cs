using Microsoft.Extensions.Logging;

namespace FaaSTube.Channels.Remote.Gateway;

/// <summary>The network gateway's side of <see cref="IRemoteHost"/>: each session a <see cref="GatewayRelay"/> to the node.</summary>
internal sealed partial class GatewayHost(GatewayConfig config, ILogger logger) : IRemoteHost
{
    public TubeNodeOptions Settings { get; } = config.ToOptions();

    public ILogger Logger => logger;

    public string NodeSocket => config.NodeSocket;

    public int NodePid => config.NodePid;

    public byte[] Key => config.Key;

    public TimeSpan CallTimeout => config.CallTimeout;

    public string InternalError(string operation, long session, Exception exception)
    {
        string reference = Guid.NewGuid().ToString("N")[..12];
        LogInternal(logger, exception, operation, session, reference);
        return $"The node's network gateway failed serving {operation} (reference {reference}; the node's log has the details).";
    }

    public IRemoteBackend NewSession() => new GatewayRelay(this);

    /// <summary>A remote client's session could not be relayed: no node, or not the right one, on the socket.</summary>
    public void NodeUnreachable(long session, string reason) => LogNodeUnreachable(logger, session, reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Network gateway: session {Session} not relayed: {Reason}")]
    private static partial void LogNodeUnreachable(ILogger logger, long session, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Network gateway: serving {Operation} failed (session {Session}, reference {Reference})")]
    private static partial void LogInternal(ILogger logger, Exception exception, string operation, long session, string reference);
}
