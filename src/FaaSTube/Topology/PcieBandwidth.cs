namespace FaaSTube.Topology;

/// <summary>
/// The DMA bandwidth per direction of a GPU's PCIe link, from its generation and lane count: the
/// rate copies reach in practice on an x16 link, scaled by width (Gen3 12 GB/s, Gen4 25 GB/s,
/// Gen5 55 GB/s: the figures of the presets in <c>src/FaaSTube/Topology/TopologyPresets.cs</c>, as
/// measured on V100, A100 and H100 machines; Gen1 and Gen2 in the same proportion to their signalling
/// rate; each later generation doubles). The CUDA driver API has no attribute for the link, so the
/// generation and width come from NVML (<c>src/FaaSTube.Native/NvLinkDiscovery.cs</c>, the maximum
/// the device supports, not the trained-down current one of an idle GPU).
/// </summary>
internal static class PcieBandwidth
{
    /// <summary>
    /// What a link is taken to carry when NVML cannot tell (no libnvidia-ml): Gen4 x16, 25 GB/s.
    /// Set <c>TransferEngineOptions.LinkBytesPerSecond</c> where that is wrong.
    /// </summary>
    public const double Unknown = 25e9;

    private static readonly double[] X16 = [0, 3e9, 6e9, 12e9, 25e9, 55e9];

    /// <summary>Bytes per second per direction for <paramref name="generation"/> and <paramref name="width"/> lanes; null when either is not positive.</summary>
    public static double? BytesPerSecond(int generation, int width)
    {
        if (generation <= 0 || width <= 0)
        {
            return null;
        }

        double x16 = generation < X16.Length ? X16[generation] : X16[^1] * Math.Pow(2, generation - (X16.Length - 1));
        return x16 * width / 16;
    }

    /// <summary>As <see cref="BytesPerSecond(int, int)"/> for a probed link, <see cref="Unknown"/> when there is none.</summary>
    public static double Of((int Generation, int Width)? link) =>
        link is var (generation, width) ? BytesPerSecond(generation, width) ?? Unknown : Unknown;
}
