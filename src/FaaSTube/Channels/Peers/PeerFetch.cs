namespace FaaSTube.Channels.Peers;

/// <summary>
/// One fetch a node asks for: the data of <see cref="Id"/>, or the current version of
/// <see cref="Name"/> in <see cref="Namespace"/>, of <see cref="Workflow"/>, from the peer node at
/// <see cref="Address"/> (<c>ucx://host:port</c>), proven with the workflow's own remote secret.
/// </summary>
/// <param name="Request">The asking node's number for it (matches the answer).</param>
/// <param name="Address">The peer's listener.</param>
/// <param name="Workflow">Whose data: the peer scopes it to this workflow as it does for any remote client.</param>
/// <param name="Id">The id asked for; null for a name.</param>
/// <param name="Namespace">A name's namespace ("" or null: the workflow's own scope).</param>
/// <param name="Name">The name asked for; null for an id.</param>
/// <param name="WaitMilliseconds">How long the peer waits for an id allocated there but not yet published (the asking Get's own wait).</param>
internal sealed record PeerFetch(long Request, string Address, string Workflow, TubeId? Id, string? Namespace, string? Name, int WaitMilliseconds = 0)
{
    /// <summary>The function name a node's fetching session has on both nodes: a session with it never makes a node fetch in turn (no fetch loops between peers).</summary>
    public const string Function = "faastube.peer-fetch";

    public override string ToString() => Name is { } name
        ? $"name '{name}'{(string.IsNullOrEmpty(Namespace) ? "" : $" in namespace '{Namespace}'")} of workflow '{Workflow}' from {Address}"
        : $"{Id} of workflow '{Workflow}' from {Address}";
}

/// <summary>What a fetch put on the asking node: <see cref="Local"/>, a committed Put of <see cref="PeerFetch.Workflow"/> (for an id, which the node adopts under the id asked for), or a name's new <see cref="Version"/>.</summary>
internal sealed record PeerFetched(long Request, TubeId Local, long Length, long Version);

/// <summary>Where a node's fetches run: in the node's process (<see cref="NetworkIsolation.InProcess"/>) or in its network gateway (<see cref="NetworkIsolation.Process"/>).</summary>
internal interface IPeerTransport : IAsyncDisposable
{
    /// <summary>Copies what <paramref name="fetch"/> names from the peer into this node.</summary>
    /// <exception cref="TubeException">The peer refused (<see cref="TubeError.NotFound"/> when it has no such data), or could not be reached.</exception>
    Task<PeerFetched> FetchAsync(PeerFetch fetch, CancellationToken cancellationToken);
}
