using FaaSTube.Native;
using FaaSTube.Topology;

namespace FaaSTube.Devices.Cuda;

/// <summary>
/// What the driver says about the links: peer access and the P2P performance rank per pair, PCIe
/// switches from bus ids. Bandwidths are not reported by the driver; the host link is taken from the
/// H100 measurement (DESIGN.md section 4) until the multi-GPU work measures or reads them (NVML).
/// </summary>
internal static unsafe class CudaTopology
{
    public static GpuTopology Discover(IReadOnlyList<GpuDevice> devices)
    {
        int n = devices.Count;
        var peers = new PeerLink[n, n];
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
                peers[a, b] = access != 0 ? new PeerLink(PeerLinkKind.Pcie, 1, 0) : default;
            }
        }

        // GPUs whose bus ids share domain and bus number prefix are grouped under one switch.
        var switches = devices.Select(d => d.PciBusId.Length >= 7 ? d.PciBusId[..7] : d.PciBusId).ToArray();
        var ids = switches.Distinct().Select((s, i) => (s, i)).ToDictionary(p => p.s, p => p.i);
        var name = n == 1 ? $"cuda ({devices[0].Name})" : $"cuda ({n} GPUs)";
        return new GpuTopology(name, peers, switches.Select(s => ids[s]).ToArray(), 55e9, 1450e9, devices[0].TotalMemory, TimeSpan.FromMicroseconds(5));
    }
}
