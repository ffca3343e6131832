namespace FaaSTube.Topology;

/// <summary>How two GPUs are connected directly.</summary>
public enum PeerLinkKind
{
    /// <summary>No direct GPU-to-GPU path (copies go through the host or other GPUs).</summary>
    None = 0,

    /// <summary>One or more point-to-point NVLinks.</summary>
    NvLink = 1,

    /// <summary>All-to-all through NVSwitch.</summary>
    NvSwitch = 2,

    /// <summary>Peer-to-peer over PCIe (same root complex), bandwidth of the PCIe link.</summary>
    Pcie = 3,
}

/// <summary>The direct link between an ordered pair of GPUs.</summary>
/// <param name="Kind">What kind of link.</param>
/// <param name="LinkCount">NVLink count (1 for NVSwitch or PCIe, 0 for none).</param>
/// <param name="BytesPerSecond">Bandwidth per direction in bytes per second (0 for none or unknown).</param>
/// <param name="PerformanceRank">The driver's relative P2P performance rank (CU_DEVICE_P2P_ATTRIBUTE_PERFORMANCE_RANK; 0 in presets and when unknown).</param>
public readonly record struct PeerLink(PeerLinkKind Kind, int LinkCount, double BytesPerSecond, int PerformanceRank = 0);

/// <summary>
/// A machine's GPUs and the links between them and the host: presets of the paper's machines,
/// or what the CUDA driver reports. Immutable.
/// </summary>
public sealed class GpuTopology
{
    private readonly PeerLink[,] _peers;
    private readonly int[] _pcieSwitch;
    private readonly int[] _numaNode;

    /// <summary>Creates a topology.</summary>
    /// <param name="name">A short name, e.g. <c>dgx1-v100</c>.</param>
    /// <param name="peers">The direct link of each ordered pair (diagonal ignored).</param>
    /// <param name="pcieSwitch">The PCIe switch each GPU sits behind.</param>
    /// <param name="hostBytesPerSecond">Host link (PCIe) bandwidth per GPU per direction.</param>
    /// <param name="deviceMemoryBytesPerSecond">On-device copy bandwidth.</param>
    /// <param name="memoryBytes">Memory per GPU.</param>
    /// <param name="linkLatency">Latency added to every modelled copy.</param>
    /// <param name="numaNode">The host NUMA node each GPU's PCIe root sits on (default: all on node 0).</param>
    /// <param name="pcieGeneration">The GPUs' PCIe generation (0: unknown).</param>
    /// <param name="pcieWidth">The GPUs' PCIe lane count (0: unknown).</param>
    public GpuTopology(
        string name, PeerLink[,] peers, int[] pcieSwitch, double hostBytesPerSecond,
        double deviceMemoryBytesPerSecond, long memoryBytes, TimeSpan linkLatency, int[]? numaNode = null,
        int pcieGeneration = 0, int pcieWidth = 0)
    {
        ArgumentNullException.ThrowIfNull(peers);
        ArgumentNullException.ThrowIfNull(pcieSwitch);
        int n = pcieSwitch.Length;
        if (n < 1 || peers.GetLength(0) != n || peers.GetLength(1) != n)
        {
            throw new ArgumentException($"The peer matrix must be {n}x{n} for {n} GPUs.", nameof(peers));
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(hostBytesPerSecond);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(deviceMemoryBytesPerSecond);
        Name = name;
        _peers = (PeerLink[,])peers.Clone();
        _pcieSwitch = (int[])pcieSwitch.Clone();
        _numaNode = numaNode is null ? new int[n] : numaNode.Length == n ? (int[])numaNode.Clone() : throw new ArgumentException($"numaNode needs {n} entries.", nameof(numaNode));
        HostBytesPerSecond = hostBytesPerSecond;
        DeviceMemoryBytesPerSecond = deviceMemoryBytesPerSecond;
        MemoryBytes = memoryBytes;
        LinkLatency = linkLatency;
        PcieGeneration = pcieGeneration;
        PcieWidth = pcieWidth;
    }

    /// <summary>The GPUs' PCIe generation (3, 4, 5; 0 when unknown); <see cref="HostBytesPerSecond"/> is what it carries.</summary>
    public int PcieGeneration { get; }

    /// <summary>The GPUs' PCIe lane count (16; 0 when unknown).</summary>
    public int PcieWidth { get; }

    /// <summary>A short name.</summary>
    public string Name { get; }

    /// <summary>Number of GPUs.</summary>
    public int GpuCount => _pcieSwitch.Length;

    /// <summary>Host link (PCIe) bandwidth per GPU per direction, bytes per second.</summary>
    public double HostBytesPerSecond { get; }

    /// <summary>On-device copy bandwidth, bytes per second.</summary>
    public double DeviceMemoryBytesPerSecond { get; }

    /// <summary>Memory per GPU in bytes.</summary>
    public long MemoryBytes { get; }

    /// <summary>Latency added to every modelled copy.</summary>
    public TimeSpan LinkLatency { get; }

    /// <summary>The direct link from <paramref name="from"/> to <paramref name="to"/>.</summary>
    /// <param name="from">Source GPU.</param>
    /// <param name="to">Destination GPU.</param>
    public PeerLink Peer(int from, int to)
    {
        CheckGpu(from);
        CheckGpu(to);
        return from == to ? default : _peers[from, to];
    }

    /// <summary>The PCIe switch GPU <paramref name="gpu"/> sits behind.</summary>
    /// <param name="gpu">The GPU.</param>
    public int PcieSwitch(int gpu)
    {
        CheckGpu(gpu);
        return _pcieSwitch[gpu];
    }

    /// <summary>The host NUMA node GPU <paramref name="gpu"/> is attached to.</summary>
    /// <param name="gpu">The GPU.</param>
    public int NumaNode(int gpu)
    {
        CheckGpu(gpu);
        return _numaNode[gpu];
    }

    private void CheckGpu(int gpu)
    {
        if ((uint)gpu >= (uint)GpuCount)
        {
            throw new ArgumentOutOfRangeException(nameof(gpu), gpu, $"The topology {Name} has GPUs 0-{GpuCount - 1}.");
        }
    }

    /// <summary>DGX-1 with eight V100s: NVLink 2 hybrid cube-mesh (2, 1 or 0 links per pair, 24 GB/s per link), PCIe Gen3 12 GB/s, two GPUs per PCIe switch.</summary>
    public static GpuTopology Dgx1V100 { get; } = TopologyPresets.Dgx1V100();

    /// <summary>DGX A100: eight A100s all-to-all through NVSwitch (300 GB/s per GPU), PCIe Gen4 25 GB/s, two GPUs per PCIe switch.</summary>
    public static GpuTopology DgxA100 { get; } = TopologyPresets.DgxA100();

    /// <summary>One H100 80GB on PCIe Gen5 (55 GB/s measured), no peers.</summary>
    public static GpuTopology SingleH100 { get; } = TopologyPresets.SingleH100();

    /// <summary>A preset by name: <c>h100</c>, <c>dgx1</c> (or <c>dgx1-v100</c>), <c>dgx-a100</c> (or <c>a100</c>).</summary>
    /// <param name="name">The preset's name, case-insensitive.</param>
    public static GpuTopology FromName(string name) => name.ToLowerInvariant() switch
    {
        "h100" or "single-h100" or "h100-pcie" => SingleH100,
        "dgx1" or "dgx1-v100" or "dgx-1" => Dgx1V100,
        "dgx-a100" or "dgxa100" or "a100" => DgxA100,
        _ => throw new ArgumentException($"Unknown topology preset '{name}' (known: h100, dgx1, dgx-a100).", nameof(name)),
    };

    /// <inheritdoc/>
    public override string ToString() => $"{Name} ({GpuCount} GPU{(GpuCount == 1 ? "" : "s")})";
}
