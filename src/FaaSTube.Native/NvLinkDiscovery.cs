using System.Globalization;
using System.Text;

namespace FaaSTube.Native;

/// <summary>NVLink counts between GPUs and each GPU's PCIe link, read with NVML; null when NVML is missing or fails (the caller falls back to peer attributes).</summary>
internal static unsafe class NvLinkDiscovery
{
    /// <summary>The current PCIe generation and width of the GPU at <paramref name="busId"/>, or null.</summary>
    public static (int Generation, int Width)? PcieLink(string busId)
    {
        if (!CudaLibrary.IsNvmlAvailable || Interop.Nvml.nvmlInit() != 0)
        {
            return null;
        }

        try
        {
            nint device;
            uint generation, width;
            fixed (byte* id = Encoding.ASCII.GetBytes(busId + "\0"))
            {
                return Interop.Nvml.nvmlDeviceGetHandleByPciBusId(id, &device) == 0
                    && Interop.Nvml.nvmlDeviceGetCurrPcieLinkGeneration(device, &generation) == 0
                    && Interop.Nvml.nvmlDeviceGetCurrPcieLinkWidth(device, &width) == 0
                    ? ((int)generation, (int)width)
                    : null;
            }
        }
        finally
        {
            Interop.Nvml.nvmlShutdown();
        }
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
