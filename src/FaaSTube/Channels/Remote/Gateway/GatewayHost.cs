using System.Net.Sockets;
using FaaSTube.Channels.Transport;
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

    /// <summary>
    /// A connection to the node's socket, made sure to be the node that started this gateway (its pid
    /// and user, SO_PEERCRED): the key, the windows and every byte go only there.
    /// </summary>
    /// <exception cref="IOException">No node answers there, or another process does.</exception>
    public async Task<Socket> ConnectNodeAsync(CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(NodeSocket), cancellationToken).ConfigureAwait(false);
            var (pid, uid) = UnixRights.PeerCredentials(socket);
            if (pid != NodePid || uid != FaaSTube.Native.Interop.Libc.getuid())
            {
                throw new IOException($"The process on {NodeSocket} (pid {pid}, user {uid}) is not the node that started this gateway (pid {NodePid}).");
            }

            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new IOException($"The node does not answer on {NodeSocket} (it is stopping, or gone): {e.Message}", e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>A remote client's session could not be relayed: no node, or not the right one, on the socket.</summary>
    public void NodeUnreachable(long session, string reason) => LogNodeUnreachable(logger, session, reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Network gateway: session {Session} not relayed: {Reason}")]
    private static partial void LogNodeUnreachable(ILogger logger, long session, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Network gateway: serving {Operation} failed (session {Session}, reference {Reference})")]
    private static partial void LogInternal(ILogger logger, Exception exception, string operation, long session, string reference);
}
