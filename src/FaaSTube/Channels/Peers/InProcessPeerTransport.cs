namespace FaaSTube.Channels.Peers;

/// <summary>
/// Fetches in the node's own process (<see cref="NetworkIsolation.InProcess"/>): a remote client of
/// the peer and an in-process client of this node over one window (<see cref="TubeClient.CopyToAsync"/>).
/// </summary>
internal sealed class InProcessPeerTransport : IPeerTransport
{
    private readonly TubeNode _node;
    private readonly PeerLinks _links;

    public InProcessPeerTransport(TubeNode node)
    {
        _node = node;
        _links = new PeerLinks(ConnectAsync, node.Settings.PeerFetchTimeout);
    }

    public Task<PeerFetched> FetchAsync(PeerFetch fetch, CancellationToken cancellationToken) => _links.FetchAsync(fetch, cancellationToken);

    private Task<PeerLink> ConnectAsync(PeerFetch fetch, CancellationToken cancellationToken)
    {
        var options = PeerClients.Options(_node.Settings, fetch);
        return PeerLink.OpenAsync(
            options.WindowBytes,
            window => TubeClient.ConnectPeerAsync(options, window, _node.Services, cancellationToken),
            window => TubeClient.ConnectPeerTargetAsync(_node, PeerClients.Local(options), window, cancellationToken));
    }

    public ValueTask DisposeAsync() => _links.DisposeAsync();
}

/// <summary>The two clients of a fetch, wherever it runs (the node, or its network gateway).</summary>
internal static class PeerClients
{
    /// <summary>The window both clients share: parts move through it in slots, several in flight.</summary>
    public const int WindowBytes = 64 << 20;

    /// <summary>The remote client's options: the workflow's own secret proves it to the peer.</summary>
    public static TubeClientOptions Options(TubeNodeOptions node, PeerFetch fetch) => Options(node.RemoteSecrets, node.MaxWindowBytes, node.UcxSettings, fetch);

    /// <summary>The remote client's options from the node's secrets, window limit and UCX settings (the listener's transport and devices are the fetch's too).</summary>
    public static TubeClientOptions Options(IReadOnlyDictionary<string, byte[]>? secrets, long maxWindowBytes, IReadOnlyDictionary<string, string>? ucx, PeerFetch fetch) => new()
    {
        UcxSettings = ucx,
        Address = fetch.Address,
        Workflow = fetch.Workflow,
        Function = PeerFetch.Function,
        RemoteSecret = secrets?.GetValueOrDefault(fetch.Workflow) ?? throw new TubeException(TubeError.AccessDenied, $"Workflow '{fetch.Workflow}' has no remote secret on this node: its data is not fetched from peers."),
        WindowBytes = (int)Math.Min(WindowBytes, maxWindowBytes),
        ControlRingBytes = 0,
    };

    /// <summary>The local client's: the same workflow and window, no address.</summary>
    public static TubeClientOptions Local(TubeClientOptions remote) => new()
    {
        Workflow = remote.Workflow,
        Function = remote.Function,
        WindowBytes = remote.WindowBytes,
        ControlRingBytes = 0,
        CallTimeout = remote.CallTimeout,
    };
}
