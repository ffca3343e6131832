namespace FaaSTube.Transfers.Routing;

/// <summary>One path of a routed copy and the bandwidth reserved on it.</summary>
/// <param name="Nodes">GPUs crossed in order; <see cref="PathRouter.Host"/> (-1) is host memory.</param>
/// <param name="BytesPerSecond">Reserved on every link of the path.</param>
internal readonly record struct RoutePath(IReadOnlyList<int> Nodes, double BytesPerSecond)
{
    /// <summary>Links crossed (0 for a copy inside one GPU).</summary>
    public int Hops => Nodes.Count - 1;

    /// <summary>True when the path goes through host memory (the PCIe fallback, or a harvested neighbour's PCIe lane).</summary>
    public bool ViaHost => Nodes.Contains(PathRouter.Host);

    /// <inheritdoc/>
    public override string ToString() =>
        $"{string.Join(" -> ", Nodes.Select(n => n == PathRouter.Host ? "host" : $"gpu{n}"))} @ {BytesPerSecond / 1e9:F1} GB/s";
}

/// <summary>
/// Bandwidth reserved for one copy on one or more paths. Dispose (or release paths one by one as
/// they finish) to give it back; the router never lets reservations exceed a link.
/// </summary>
internal sealed class RouteReservation : IDisposable
{
    private readonly PathRouter _router;

    internal RouteReservation(PathRouter router, long id, int from, int to)
    {
        _router = router;
        Id = id;
        From = from;
        To = to;
    }

    /// <summary>Unique per router.</summary>
    public long Id { get; }

    /// <summary>Source (a GPU, or <see cref="PathRouter.Host"/>).</summary>
    public int From { get; }

    /// <summary>Destination.</summary>
    public int To { get; }

    /// <summary>The paths in use now (the router may move a borrowed path of this flow when another copy needs that link).</summary>
    public IReadOnlyList<RoutePath> Paths => _router.PathsOf(this);

    /// <summary>The sum of the paths' reserved bandwidth.</summary>
    public double BytesPerSecond => Paths.Sum(p => p.BytesPerSecond);

    internal List<PathRouter.Reserved> Reserved { get; } = [];

    /// <summary>True when the path's borrowed PCIe lane was claimed back by its GPU: send no more chunks that way.</summary>
    /// <param name="nodes">The path's nodes.</param>
    public bool IsRevoked(IReadOnlyList<int> nodes) => _router.IsRevoked(this, nodes);

    /// <summary>Gives back the bandwidth of the path that carries <paramref name="nodes"/> (its chunks are done).</summary>
    /// <param name="nodes">The path's nodes, as in <see cref="Paths"/>.</param>
    public void ReleasePath(IReadOnlyList<int> nodes) => _router.ReleasePath(this, nodes);

    /// <summary>Gives back all of it (idempotent).</summary>
    public void Dispose() => _router.Release(this);
}
