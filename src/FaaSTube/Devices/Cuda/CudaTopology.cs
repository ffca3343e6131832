using FaaSTube.Native;
using FaaSTube.Topology;

namespace FaaSTube.Devices.Cuda;

/// <summary>
/// What the driver says about the links: NVLink counts per pair from NVML where it is present
/// (25 GB/s per link per direction), otherwise peer access over PCIe; PCIe switches from bus ids.
/// The host link's bandwidth is not reported by the driver: the H100 measurement (DESIGN.md
/// section 4) stands in for it.
/// </summary>
internal static unsafe class CudaTopology
{
    /// <summary>Bandwidth of one NVLink per direction (NVLink 2-4: 25 GB/s).</summary>
    private const double NvLinkBytesPerSecond = 25e9;

    /// <summary>
    /// The PCIe switch above a GPU, from sysfs: the GPU hangs off a downstream port whose parent is
    /// the switch's upstream port (/sys/devices/pci.../UPSTREAM/DOWNSTREAM/GPU), so GPUs that share
    /// that grandparent share the switch. Without sysfs, the PCI domain and bus stand in.
    /// </summary>
    internal static string SwitchOf(string busId)
    {
        try
        {
            if (new DirectoryInfo($"/sys/bus/pci/devices/{busId}").ResolveLinkTarget(returnFinalTarget: true) is { } device
                && Directory.GetParent(device.FullName)?.Parent is { } upstream)
            {
                return upstream.FullName;
            }
        }
        catch (IOException)
        {
            // No sysfs entry: fall through.
        }

        return busId.Length >= 7 ? busId[..7] : busId;
    }

    /// <summary>The host NUMA node of a PCI function, from sysfs (0 when unknown).</summary>
    internal static int NumaOf(string busId)
    {
        try
        {
            return int.TryParse(File.ReadAllText($"/sys/bus/pci/devices/{busId}/numa_node").Trim(), out int node) && node >= 0 ? node : 0;
        }
        catch (IOException)
        {
            return 0;
        }
        catch (UnauthorizedAccessException)
        {
            return 0;
        }
    }

    public static GpuTopology Discover(IReadOnlyList<GpuDevice> devices)
    {
        int n = devices.Count;
        var peers = new PeerLink[n, n];
        var nvlinks = n > 1 ? NvLinkDiscovery.Count(devices.Select(d => d.PciBusId).ToArray()) : null;
        for (int a = 0; a < n; a++)
        {
            for (int b = 0; b < n; b++)
            {
                if (a == b)
                {
                    continue;
                }

                int access;
                CudaException.ThrowIfFailed(Interop.Cuda.cuDeviceGetP2PAttribute(
                    &access, CuP2PAttribute.AccessSupported, ((CudaGpuDevice)devices[a]).CudaDevice, ((CudaGpuDevice)devices[b]).CudaDevice));
                int rank = 0;
                if (access != 0)
                {
                    CudaException.ThrowIfFailed(Interop.Cuda.cuDeviceGetP2PAttribute(
                        &rank, CuP2PAttribute.PerformanceRank, ((CudaGpuDevice)devices[a]).CudaDevice, ((CudaGpuDevice)devices[b]).CudaDevice));
                }

                int links = nvlinks?[a, b] ?? 0;
                peers[a, b] = links > 0
                    ? new PeerLink(PeerLinkKind.NvLink, links, links * NvLinkBytesPerSecond, rank)
                    : access != 0 ? new PeerLink(PeerLinkKind.Pcie, 1, Math.Min(devices[a].HostLinkBytesPerSecond, devices[b].HostLinkBytesPerSecond), rank) : default;
            }
        }

        var switches = devices.Select(d => SwitchOf(d.PciBusId)).ToArray();
        var ids = switches.Distinct().Select((s, i) => (s, i)).ToDictionary(p => p.s, p => p.i);
        var name = n == 1 ? $"cuda ({devices[0].Name})" : $"cuda ({n} GPUs)";
        var pcie = ((CudaGpuDevice)devices[0]).PcieLink;
        return new GpuTopology(name, peers, switches.Select(s => ids[s]).ToArray(), PcieBandwidth.Of(pcie), 1450e9, devices[0].TotalMemory, TimeSpan.FromMicroseconds(5),
            numaNode: devices.Select(d => NumaOf(d.PciBusId)).ToArray(), pcieGeneration: pcie?.Generation ?? 0, pcieWidth: pcie?.Width ?? 0);
    }
}
