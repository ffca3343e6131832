using System.Net.Sockets;
using FaaSTube.Channels.Client;
using FaaSTube.Channels.Peers;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Hosting;
using Microsoft.Extensions.Logging;

namespace FaaSTube.Channels.Remote.Gateway;

/// <summary>
/// In the network gateway: runs the fetches its node asks for (<see cref="GatewayFetchLines"/>). Each
/// is a remote client of the peer and a relayed client of the node (a <c>GatewayHello</c> connection of
/// the fetch's workflow, host data only) over one window, a sealed memfd both processes map: UCX
/// receives each part from the peer into it and the node DMAs it from there
/// (<see cref="TubeClient.CopyToAsync"/>). At most <see cref="GatewayConfig.MaxPeerFetches"/> run at once;
/// every one ends when the gateway stops. Links are kept between fetches (<see cref="PeerLinks"/>).
/// </summary>
internal sealed partial class GatewayFetches : IAsyncDisposable
{
    private readonly GatewayHost _host;
    private readonly GatewayConfig _config;
    private readonly Func<string, Task> _say;
    private readonly CancellationToken _stop;
    private readonly SemaphoreSlim _places;
    private readonly PeerLinks _links;

    public GatewayFetches(GatewayHost host, GatewayConfig config, Func<string, Task> say, CancellationToken stop)
    {
        _host = host;
        _config = config;
        _say = say;
        _stop = stop;
        _places = new SemaphoreSlim(Math.Max(1, config.MaxPeerFetches), Math.Max(1, config.MaxPeerFetches));
        _links = new PeerLinks(ConnectAsync, config.PeerFetchTimeout);
    }

    /// <summary>Takes one line of the node's input: a fetch starts (its answer comes later); anything else is logged and ignored.</summary>
    public void Take(string line)
    {
        if (!line.StartsWith(GatewayFetchLines.Fetch, StringComparison.Ordinal))
        {
            LogIgnored(_host.Logger, line.Length);
            return;
        }

        PeerFetch fetch;
        try
        {
            fetch = GatewayFetchLines.ReadAsk(line);
        }
        catch (Exception e) when (e is InvalidDataException or System.Text.Json.JsonException or FormatException)
        {
            LogBadLine(_host.Logger, e.Message);
            return;
        }

        _ = Task.Run(() => RunAsync(fetch), CancellationToken.None);
    }

    private async Task RunAsync(PeerFetch fetch)
    {
        string answer;
        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stop);
            deadline.CancelAfter(_config.PeerFetchTimeout);
            await _places.WaitAsync(deadline.Token).ConfigureAwait(false);
            try
            {
                answer = GatewayFetchLines.Answer(await CopyAsync(fetch, deadline.Token).ConfigureAwait(false));
            }
            finally
            {
                _places.Release();
            }
        }
        catch (TubeException e)
        {
            answer = GatewayFetchLines.Refusal(fetch.Request, e.Error, e.Reason);
        }
        catch (TubeNodeUnavailableException e)
        {
            answer = GatewayFetchLines.Unreachable(fetch.Request, e.Message);
        }
        catch (OperationCanceledException)
        {
            answer = GatewayFetchLines.Refusal(fetch.Request, TubeError.NotFound, "The fetch did not end within its time, or the network gateway stopped.");
        }
        catch (Exception e)
        {
            answer = GatewayFetchLines.Refusal(fetch.Request, TubeError.Internal, _host.InternalError("a peer fetch", 0, e));
        }

        await _say(answer).ConfigureAwait(false);
    }

    private Task<PeerFetched> CopyAsync(PeerFetch fetch, CancellationToken cancellationToken) => _links.FetchAsync(fetch, cancellationToken);

    /// <summary>A new link: a remote client of the peer, and a relayed client of the node over the same window.</summary>
    private Task<PeerLink> ConnectAsync(PeerFetch fetch, CancellationToken cancellationToken)
    {
        var options = PeerClients.Options(_config.RemoteSecrets, _config.MaxWindowBytes, _config.UcxSettings, fetch);
        return PeerLink.OpenAsync(
            options.WindowBytes,
            window => TubeClient.ConnectPeerAsync(options, window, FaaSTubeServices.Default, cancellationToken),
            window => TubeClient.ConnectOverAsync(PeerClients.Local(options), window, async client =>
            {
                var socket = await _host.ConnectNodeAsync(cancellationToken).ConfigureAwait(false);
                var (closeSlab, oneWayFailed) = client.Callbacks;
                var connection = new FramedConnection(socket, ring: null, _host.CallTimeout, closeSlab, oneWayFailed);
                try
                {
                    var ok = await connection.GatewayHelloAsync(new GatewayHello(Frames.Version, _host.Key, fetch.Workflow, PeerFetch.Function, window.Length, RingBytes: 0), window.Descriptor, cancellationToken).ConfigureAwait(false);
                    return (connection, ok);
                }
                catch
                {
                    await connection.DisposeAsync().ConfigureAwait(false);
                    throw;
                }
            }));
    }

    /// <summary>The gateway stops: kept links close.</summary>
    public ValueTask DisposeAsync() => _links.DisposeAsync();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Network gateway: a line of {Length} characters on its input is not a fetch; ignored")]
    private static partial void LogIgnored(ILogger logger, int length);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Network gateway: a fetch line it cannot read ({Reason}); ignored")]
    private static partial void LogBadLine(ILogger logger, string reason);
}
