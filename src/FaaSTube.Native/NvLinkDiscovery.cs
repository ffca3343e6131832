using System.Globalization;
using System.Text;

namespace FaaSTube.Native;

/// <summary>NVLink counts between GPUs and each GPU's PCIe link, read with NVML; null when NVML is missing or fails (the caller falls back to peer attributes).</summary>
internal static unsafe class NvLinkDiscovery
{
    /// <summary>
    /// The PCIe generation and width the GPU at <paramref name="busId"/> can run at in this system
    /// (NVML's max link generation and width), or null. Not the current ones: an idle GPU trains its
    /// link down (an idle H100 reports Gen1), which would make the topology's host bandwidth wrong.
    /// The current values stand in only when NVML cannot tell the maximum.
    /// </summary>
    public static (int Generation, int Width)? PcieLink(string busId)
    {
        if (!CudaLibrary.IsNvmlAvailable || Interop.Nvml.nvmlInit() != 0)
        {
            return null;
        }

        try
        {
            nint device;
            fixed (byte* id = Encoding.ASCII.GetBytes(busId + "\0"))
            {
                if (Interop.Nvml.nvmlDeviceGetHandleByPciBusId(id, &device) != 0)
                {
                    return null;
                }
            }

            return ChooseLink(Read(device, &Interop.Nvml.nvmlDeviceGetMaxPcieLinkGeneration), Read(device, &Interop.Nvml.nvmlDeviceGetMaxPcieLinkWidth),
                Read(device, &Interop.Nvml.nvmlDeviceGetCurrPcieLinkGeneration), Read(device, &Interop.Nvml.nvmlDeviceGetCurrPcieLinkWidth));
        }
        finally
        {
            Interop.Nvml.nvmlShutdown();
        }
    }

    /// <summary>The maximum generation and width where NVML reported them, else the current ones; null when neither is known.</summary>
    internal static (int Generation, int Width)? ChooseLink(int? maxGeneration, int? maxWidth, int? currentGeneration, int? currentWidth)
    {
        int? generation = maxGeneration is > 0 ? maxGeneration : currentGeneration;
        int? width = maxWidth is > 0 ? maxWidth : currentWidth;
        return generation is > 0 && width is > 0 ? (generation.Value, width.Value) : null;
    }

    private static int? Read(nint device, delegate*<nint, uint*, int> query)
    {
        uint value;
        return query(device, &value) == 0 ? (int)value : null;
    }

    /// <summary>For each ordered pair of the given PCI bus ids, how many active NVLinks join them.</summary>
    public static int[,]? Count(IReadOnlyList<string> busIds)
    {
        if (!CudaLibrary.IsNvmlAvailable || Interop.Nvml.nvmlInit() != 0)
        {
            return null;
        }

        try
        {
            var normal = busIds.Select(Normalize).ToArray();
            var counts = new int[busIds.Count, busIds.Count];
            for (int a = 0; a < busIds.Count; a++)
            {
                nint device;
                fixed (byte* id = Encoding.ASCII.GetBytes(busIds[a] + "\0"))
                {
                    if (Interop.Nvml.nvmlDeviceGetHandleByPciBusId(id, &device) != 0)
                    {
                        return null;
                    }
                }

                for (uint link = 0; link < Interop.Nvml.MaxLinks; link++)
                {
                    int active;
                    NvmlPciInfo remote;
                    if (Interop.Nvml.nvmlDeviceGetNvLinkState(device, link, &active) != 0 || active == 0
                        || Interop.Nvml.nvmlDeviceGetNvLinkRemotePciInfo(device, link, &remote) != 0)
                    {
                        continue;
                    }

                    int b = Array.IndexOf(normal, Normalize(new string((sbyte*)remote.BusId)));
                    if (b >= 0 && b != a)
                    {
                        counts[a, b]++;
                    }
                }
            }

            return counts;
        }
        finally
        {
            Interop.Nvml.nvmlShutdown();
        }
    }

    /// <summary>"00000000:1B:00.0" and "0000:1b:00.0" name the same function: compare domain, bus, device, function as numbers.</summary>
    internal static string Normalize(string busId)
    {
        var parts = busId.Trim().Split(':', '.');
        return parts.Length == 4
            ? string.Join(':', parts.Select(p => long.Parse(p, NumberStyles.HexNumber, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture)))
            : busId.ToLowerInvariant();
    }
}
