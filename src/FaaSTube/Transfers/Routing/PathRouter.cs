using FaaSTube.Topology;

namespace FaaSTube.Transfers.Routing;

/// <summary>
/// Contention-aware path selection over the GPU topology (FaaSTube's router). It keeps a live matrix
/// of reserved bandwidth per link: every GPU-to-GPU link, each GPU's PCIe lanes to and from the host,
/// and for NVSwitch machines each GPU's switch port. For a copy from GPU a to b it takes idle
/// paths, shortest first (direct, then 2 and 3 hops through other GPUs), reserving on every hop the
/// least residual bandwidth along the path, until a's outgoing or b's incoming links are used up.
/// When no path is idle, a flow that borrowed the direct link a-&gt;b as a hop of a longer path is
/// moved to an alternative (or gives that path up if it has others); only then does the copy fall
/// back to host memory (D2H + H2D). Host transfers can borrow the PCIe lanes of NVLink neighbours
/// that sit behind another PCIe switch (<see cref="RouteFromHost"/>). Candidate paths are computed
/// once per pair, so a decision is a short scan (see the routing benchmark). Thread-safe.
/// </summary>
internal sealed class PathRouter
{
    /// <summary>The host-memory node in paths.</summary>
    public const int Host = -1;

    private readonly Lock _lock = new();
    private readonly GpuTopology _topology;
    private readonly double[] _capacity;
    private readonly double[] _reserved;
    private readonly Dictionary<(int, int), int> _edge = [];
    private readonly int[] _portOut;
    private readonly int[] _portIn;
    private readonly Candidate[][][] _candidates;
    private readonly Dictionary<long, RouteReservation> _flows = [];
    private readonly bool[] _laneBusy;
    private long _nextId;

    /// <summary>Creates a router with every link idle.</summary>
    /// <param name="topology">The machine.</param>
    public PathRouter(GpuTopology topology)
    {
        ArgumentNullException.ThrowIfNull(topology);
        _topology = topology;
        int n = topology.GpuCount;
        var capacity = new List<double>();
        int Add(double c)
        {
            capacity.Add(c);
            return capacity.Count - 1;
        }

        _portOut = new int[n];
        _portIn = new int[n];
        _laneBusy = new bool[n];
        for (int g = 0; g < n; g++)
        {
            _edge[(Host, g)] = Add(topology.HostBytesPerSecond);
            _edge[(g, Host)] = Add(topology.HostBytesPerSecond);
            double port = Enumerable.Range(0, n).Where(p => p != g && topology.Peer(g, p).Kind == PeerLinkKind.NvSwitch)
                .Select(p => topology.Peer(g, p).BytesPerSecond).DefaultIfEmpty(double.PositiveInfinity).Max();
            _portOut[g] = Add(port);
            _portIn[g] = Add(port);
            for (int p = 0; p < n; p++)
            {
                if (p != g && topology.Peer(g, p) is { Kind: not PeerLinkKind.None } link)
                {
                    _edge[(g, p)] = Add(link.BytesPerSecond);
                }
            }
        }

        _capacity = [.. capacity];
        _reserved = new double[_capacity.Length];
        _candidates = new Candidate[n][][];
        for (int a = 0; a < n; a++)
        {
            _candidates[a] = new Candidate[n][];
            for (int b = 0; b < n; b++)
            {
                _candidates[a][b] = a == b ? [] : Enumerate(a, b);
            }
        }
    }

    /// <summary>The machine.</summary>
    public GpuTopology Topology => _topology;

    /// <summary>Reserves paths for a copy from GPU <paramref name="from"/> to GPU <paramref name="to"/> (a single local path when they are the same GPU).</summary>
    /// <param name="from">Source GPU.</param>
    /// <param name="to">Destination GPU.</param>
    public RouteReservation Route(int from, int to)
    {
        CheckGpu(from);
        CheckGpu(to);
        lock (_lock)
        {
            var flow = NewFlow(from, to);
            if (from == to)
            {
                flow.Reserved.Add(new Reserved([from], [], _topology.DeviceMemoryBytesPerSecond));
                return flow;
            }

            TakeIdlePaths(flow, _candidates[from][to], exclude: -1);
            if (flow.Reserved.Count == 0 && _edge.TryGetValue((from, to), out int direct) && MoveBorrowersOff(direct))
            {
                TakeIdlePaths(flow, _candidates[from][to], exclude: -1);
            }

            if (flow.Reserved.Count == 0)
            {
                // No GPU path has room: through host memory (D2H then H2D), with what the lanes have left.
                int[] edges = [_edge[(from, Host)], _edge[(Host, to)]];
                flow.Reserved.Add(Reserve(new Reserved([from, Host, to], edges, Residual(edges))));
            }

            return flow;
        }
    }

    /// <summary>
    /// Reserves paths for a host-to-GPU transfer: the GPU's own PCIe lane, and when
    /// <paramref name="harvest"/>, the lanes of NVLink neighbours behind another PCIe switch whose
    /// lane is idle (host -&gt; neighbour -&gt; GPU). A busy neighbour is left alone.
    /// </summary>
    /// <param name="to">The GPU.</param>
    /// <param name="harvest">Borrow idle neighbours' lanes.</param>
    public RouteReservation RouteFromHost(int to, bool harvest = true)
    {
        CheckGpu(to);
        lock (_lock)
        {
            var flow = NewFlow(Host, to);
            int[] own = [_edge[(Host, to)]];
            flow.Reserved.Add(Reserve(new Reserved([Host, to], own, Residual(own))));
            if (harvest)
            {
                for (int n = 0; n < _topology.GpuCount; n++)
                {
                    int lane = _edge[(Host, n)];
                    if (n == to || _topology.PcieSwitch(n) == _topology.PcieSwitch(to) || _reserved[lane] > 0 || _laneBusy[n]
                        || !_edge.TryGetValue((n, to), out int link) || _topology.Peer(n, to).Kind == PeerLinkKind.Pcie)
                    {
                        continue;
                    }

                    int[] edges = [lane, _portOut[n], link, _portIn[to]];
                    double rate = Residual(edges);
                    if (rate > 0)
                    {
                        flow.Reserved.Add(Reserve(new Reserved([Host, n, to], edges, rate)));
                    }
                }
            }

            return flow;
        }
    }

    /// <summary>
    /// Marks GPU <paramref name="gpu"/>'s host-to-GPU lane as busy (its own transfers run) or idle.
    /// A busy lane is not lent to other GPUs' host transfers, and harvested paths that borrowed it are
    /// revoked: their copies stop sending new chunks that way (<see cref="RouteReservation.IsRevoked"/>).
    /// The transfer engine of that GPU calls this when its lane starts and stops working.
    /// </summary>
    /// <param name="gpu">The lane's GPU.</param>
    /// <param name="busy">True while the GPU's own transfers use it.</param>
    public void SetLaneBusy(int gpu, bool busy)
    {
        CheckGpu(gpu);
        lock (_lock)
        {
            _laneBusy[gpu] = busy;
            if (!busy)
            {
                return;
            }

            int lane = _edge[(Host, gpu)];
            foreach (var flow in _flows.Values)
            {
                foreach (var path in flow.Reserved)
                {
                    if (path.Nodes.Count > 2 && path.Nodes[0] == Host && path.Edges.Contains(lane))
                    {
                        path.Revoked = true;
                    }
                }
            }
        }
    }

    /// <summary>True while GPU <paramref name="gpu"/>'s own transfers use its host-to-GPU lane.</summary>
    /// <param name="gpu">The GPU.</param>
    public bool IsLaneBusy(int gpu)
    {
        CheckGpu(gpu);
        lock (_lock)
        {
            return _laneBusy[gpu];
        }
    }

    /// <summary>What GPU <paramref name="gpu"/>'s own transfers can count on of its host-to-GPU lane: its capacity less what harvested paths still hold.</summary>
    /// <param name="gpu">The GPU.</param>
    public double HostLaneAvailable(int gpu) => Residual(Host, gpu);

    /// <summary>Routes several copies at once, starting with the pair whose direct link has the least residual bandwidth.</summary>
    /// <param name="pairs">(from, to) of each copy.</param>
    public IReadOnlyList<RouteReservation> RouteAll(IEnumerable<(int From, int To)> pairs)
    {
        lock (_lock)
        {
            return pairs
                .OrderBy(p => p.From == p.To ? double.PositiveInfinity : _edge.TryGetValue((p.From, p.To), out int e) ? _capacity[e] - _reserved[e] : 0)
                .Select(p => Route(p.From, p.To))
                .ToList();
        }
    }

    /// <summary>Bandwidth not reserved on the link from <paramref name="from"/> to <paramref name="to"/> (either may be <see cref="Host"/>); 0 when there is no such link.</summary>
    /// <param name="from">Start of the link.</param>
    /// <param name="to">End of the link.</param>
    public double Residual(int from, int to)
    {
        lock (_lock)
        {
            return _edge.TryGetValue((from, to), out int e) ? _capacity[e] - _reserved[e] : 0;
        }
    }

    /// <summary>Throws when any link carries more reservations than its capacity (tests check this after every decision).</summary>
    public void CheckInvariant()
    {
        lock (_lock)
        {
            var sums = new double[_capacity.Length];
            foreach (var flow in _flows.Values)
            {
                foreach (var path in flow.Reserved)
                {
                    foreach (int e in path.Edges)
                    {
                        sums[e] += path.Rate;
                    }
                }
            }

            for (int e = 0; e < _capacity.Length; e++)
            {
                if (_reserved[e] > _capacity[e] * (1 + 1e-9) + 1e-3 || Math.Abs(sums[e] - _reserved[e]) > 1e-3 * Math.Max(1, _capacity[e] / 1e9))
                {
                    throw new InvalidOperationException($"Link {e}: {_reserved[e]} reserved of {_capacity[e]} (flows say {sums[e]}).");
                }
            }
        }
    }

    internal bool IsRevoked(RouteReservation flow, IReadOnlyList<int> nodes)
    {
        lock (_lock)
        {
            return flow.Reserved.Find(r => r.Nodes.SequenceEqual(nodes)) is { Revoked: true };
        }
    }

    internal IReadOnlyList<RoutePath> PathsOf(RouteReservation flow)
    {
        lock (_lock)
        {
            return flow.Reserved.Select(r => new RoutePath(r.Nodes, r.Rate)).ToArray();
        }
    }

    internal void ReleasePath(RouteReservation flow, IReadOnlyList<int> nodes)
    {
        lock (_lock)
        {
            int i = flow.Reserved.FindIndex(r => r.Nodes.SequenceEqual(nodes));
            if (i >= 0)
            {
                Unreserve(flow.Reserved[i]);
                flow.Reserved.RemoveAt(i);
            }
        }
    }

    internal void Release(RouteReservation flow)
    {
        lock (_lock)
        {
            if (_flows.Remove(flow.Id))
            {
                flow.Reserved.ForEach(Unreserve);
                flow.Reserved.Clear();
            }
        }
    }

    private RouteReservation NewFlow(int from, int to)
    {
        var flow = new RouteReservation(this, ++_nextId, from, to);
        _flows[flow.Id] = flow;
        return flow;
    }

    /// <summary>Takes idle candidate paths in order until the source's outgoing or the destination's incoming links are used up.</summary>
    private void TakeIdlePaths(RouteReservation flow, Candidate[] candidates, int exclude)
    {
        foreach (var c in candidates)
        {
            if (exclude >= 0 && c.Edges.Contains(exclude))
            {
                continue;
            }

            double rate = Residual(c.Edges);
            if (rate > 0)
            {
                flow.Reserved.Add(Reserve(new Reserved(c.Nodes, c.Edges, rate)));
                if (Saturated(flow.From, outgoing: true) || Saturated(flow.To, outgoing: false))
                {
                    return;
                }
            }
        }
    }

    /// <summary>
    /// Frees the direct link <paramref name="edge"/> of flows that use it as one hop of a longer path:
    /// each such path moves to an idle alternative of its own flow, or is given up when its flow has
    /// other paths. True when anything was freed.
    /// </summary>
    private bool MoveBorrowersOff(int edge)
    {
        bool moved = false;
        foreach (var flow in _flows.Values.ToList())
        {
            for (int i = flow.Reserved.Count - 1; i >= 0; i--)
            {
                var path = flow.Reserved[i];
                if (path.Nodes.Count <= 2 || path.Nodes.Contains(Host) || !path.Edges.Contains(edge))
                {
                    continue; // only multi-hop GPU paths borrow links
                }

                Unreserve(path);
                flow.Reserved.RemoveAt(i);
                moved = true;
                if (flow.From >= 0 && flow.To >= 0)
                {
                    TakeIdlePaths(flow, _candidates[flow.From][flow.To], exclude: edge);
                }

                if (flow.Reserved.Count == 0)
                {
                    // Nothing else for it: keep it moving through the host rather than stranding it.
                    int[] edges = [_edge[(flow.From, Host)], _edge[(Host, flow.To)]];
                    flow.Reserved.Add(Reserve(new Reserved([flow.From, Host, flow.To], edges, Residual(edges))));
                }
            }
        }

        return moved;
    }

    private bool Saturated(int gpu, bool outgoing)
    {
        if (gpu < 0)
        {
            return false;
        }

        int port = outgoing ? _portOut[gpu] : _portIn[gpu];
        if (_capacity[port] - _reserved[port] <= 0)
        {
            return true;
        }

        foreach (var ((a, b), e) in _edge)
        {
            if ((outgoing ? a == gpu && b >= 0 : b == gpu && a >= 0) && _capacity[e] - _reserved[e] > 0)
            {
                return false;
            }
        }

        return true;
    }

    private double Residual(int[] edges)
    {
        double r = double.PositiveInfinity;
        foreach (int e in edges)
        {
            r = Math.Min(r, _capacity[e] - _reserved[e]);
        }

        return double.IsPositiveInfinity(r) ? 0 : Math.Max(0, r);
    }

    private Reserved Reserve(Reserved path)
    {
        foreach (int e in path.Edges)
        {
            _reserved[e] += path.Rate;
        }

        return path;
    }

    private void Unreserve(Reserved path)
    {
        foreach (int e in path.Edges)
        {
            _reserved[e] = Math.Max(0, _reserved[e] - path.Rate);
        }
    }

    /// <summary>Direct, then every 2-hop and 3-hop path over GPU links (no GPU twice), shortest first, wider first.</summary>
    private Candidate[] Enumerate(int a, int b)
    {
        int n = _topology.GpuCount;
        var found = new List<int[]>();
        if (_edge.ContainsKey((a, b)))
        {
            found.Add([a, b]);
        }

        for (int k = 0; k < n; k++)
        {
            if (k != a && k != b && _edge.ContainsKey((a, k)) && _edge.ContainsKey((k, b)))
            {
                found.Add([a, k, b]);
            }
        }

        for (int k = 0; k < n; k++)
        {
            for (int l = 0; l < n; l++)
            {
                if (k != a && k != b && l != a && l != b && k != l && _edge.ContainsKey((a, k)) && _edge.ContainsKey((k, l)) && _edge.ContainsKey((l, b)))
                {
                    found.Add([a, k, l, b]);
                }
            }
        }

        return found
            .Select(nodes => new Candidate(nodes, EdgesOf(nodes)))
            .OrderBy(c => c.Nodes.Length)
            .ThenByDescending(c => c.Edges.Min(e => _capacity[e]))
            .ToArray();
    }

    private int[] EdgesOf(int[] nodes)
    {
        var edges = new List<int>();
        for (int i = 0; i + 1 < nodes.Length; i++)
        {
            edges.Add(_portOut[nodes[i]]);
            edges.Add(_edge[(nodes[i], nodes[i + 1])]);
            edges.Add(_portIn[nodes[i + 1]]);
        }

        return [.. edges.Distinct()];
    }

    private void CheckGpu(int gpu)
    {
        if ((uint)gpu >= (uint)_topology.GpuCount)
        {
            throw new ArgumentOutOfRangeException(nameof(gpu), gpu, $"The topology has GPUs 0-{_topology.GpuCount - 1}.");
        }
    }

    private sealed record Candidate(int[] Nodes, int[] Edges);

    /// <summary>A path of a flow with its reservation; revoked when the neighbour whose lane it borrowed needs it back.</summary>
    internal sealed record Reserved(IReadOnlyList<int> Nodes, int[] Edges, double Rate)
    {
        public bool Revoked { get; set; }
    }
}
