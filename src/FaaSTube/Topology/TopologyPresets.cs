namespace FaaSTube.Topology;

/// <summary>The machines of DESIGN.md section 3, plus the H100 measured in section 4.</summary>
internal static class TopologyPresets
{
    private const double GB = 1e9;

    /// <summary>NVLink counts of the DGX-1 hybrid cube-mesh (DESIGN.md section 3).</summary>
    internal static readonly int[,] Dgx1NvLinks =
    {
        { 0, 1, 1, 2, 2, 0, 0, 0 },
        { 1, 0, 2, 1, 0, 2, 0, 0 },
        { 1, 2, 0, 2, 0, 0, 1, 0 },
        { 2, 1, 2, 0, 0, 0, 0, 1 },
        { 2, 0, 0, 0, 0, 1, 1, 2 },
        { 0, 2, 0, 0, 1, 0, 2, 1 },
        { 0, 0, 1, 0, 1, 2, 0, 2 },
        { 0, 0, 0, 1, 2, 1, 2, 0 },
    };

    public static GpuTopology Dgx1V100()
    {
        var peers = new PeerLink[8, 8];
        for (int a = 0; a < 8; a++)
        {
            for (int b = 0; b < 8; b++)
            {
                int links = Dgx1NvLinks[a, b];
                peers[a, b] = links > 0 ? new PeerLink(PeerLinkKind.NvLink, links, links * 24 * GB) : default;
            }
        }

        return new GpuTopology("dgx1-v100", peers, [0, 0, 1, 1, 2, 2, 3, 3], 12 * GB, 900 * GB, 32L << 30, TimeSpan.FromMicroseconds(5), [0, 0, 0, 0, 1, 1, 1, 1], pcieGeneration: 3, pcieWidth: 16);
    }

    public static GpuTopology DgxA100()
    {
        var peers = new PeerLink[8, 8];
        for (int a = 0; a < 8; a++)
        {
            for (int b = 0; b < 8; b++)
            {
                peers[a, b] = a == b ? default : new PeerLink(PeerLinkKind.NvSwitch, 1, 300 * GB);
            }
        }

        return new GpuTopology("dgx-a100", peers, [0, 0, 1, 1, 2, 2, 3, 3], 25 * GB, 1500 * GB, 40L << 30, TimeSpan.FromMicroseconds(5), [0, 0, 0, 0, 1, 1, 1, 1], pcieGeneration: 4, pcieWidth: 16);
    }

    public static GpuTopology SingleH100() =>
        new("h100-pcie", new PeerLink[1, 1], [0], 55 * GB, 1450 * GB, 80L << 30, TimeSpan.FromMicroseconds(5), pcieGeneration: 5, pcieWidth: 16);
}
