namespace FaaSTube.Topology;

/// <summary>
/// The GPU connection matrix as <c>nvidia-smi topo -m</c> prints it: <c>X</c> on the diagonal,
/// <c>NV#</c> for # bonded NVLinks (through an NVSwitch too), <c>PIX</c> for GPUs under one PCIe
/// switch, <c>NODE</c> for PCIe within one NUMA node, <c>SYS</c> across NUMA nodes (through the CPUs' interconnect).
/// </summary>
public static class TopologyMatrix
{
    /// <summary>The cell for <paramref name="from"/> to <paramref name="to"/>.</summary>
    /// <param name="topology">The topology.</param>
    /// <param name="from">A GPU's ordinal.</param>
    /// <param name="to">Another GPU's ordinal.</param>
    public static string Cell(GpuTopology topology, int from, int to)
    {
        ArgumentNullException.ThrowIfNull(topology);
        if (from == to)
        {
            return "X";
        }

        var link = topology.Peer(from, to);
        return link.Kind switch
        {
            PeerLinkKind.NvLink or PeerLinkKind.NvSwitch => $"NV{link.LinkCount}",
            _ when topology.PcieSwitch(from) == topology.PcieSwitch(to) => "PIX",
            _ when topology.NumaNode(from) == topology.NumaNode(to) => "NODE",
            _ => "SYS",
        };
    }

    /// <summary>The legend nvidia-smi prints under the matrix, for the kinds this matrix uses.</summary>
    public static IReadOnlyList<(string Cell, string Meaning)> Legend { get; } =
    [
        ("X", "self"),
        ("SYS", "PCIe and the interconnect between NUMA nodes (QPI/UPI)"),
        ("NODE", "PCIe and the host bridges within a NUMA node"),
        ("PIX", "at most one PCIe switch"),
        ("NV#", "a bonded set of # NVLinks"),
    ];
}
