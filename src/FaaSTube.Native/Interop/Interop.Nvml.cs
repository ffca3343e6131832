using System.Runtime.InteropServices;

namespace FaaSTube.Native;

/// <summary>nvmlPciInfo_t (68 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct NvmlPciInfo
{
    public fixed byte BusIdLegacy[16];
    public uint Domain;
    public uint Bus;
    public uint Device;
    public uint PciDeviceId;
    public uint PciSubSystemId;
    public fixed byte BusId[32];
}

internal static unsafe partial class Interop
{
    /// <summary>NVML (libnvidia-ml): NVLink state and peers, for topology discovery.</summary>
    internal static partial class Nvml
    {
        private const string Lib = CudaLibrary.NvmlName;

        /// <summary>NVML_NVLINK_MAX_LINKS in current drivers (H100: 18).</summary>
        public const uint MaxLinks = 18;

        [LibraryImport(Lib, EntryPoint = "nvmlInit_v2")] internal static partial int nvmlInit();
        [LibraryImport(Lib)] internal static partial int nvmlShutdown();
        [LibraryImport(Lib, EntryPoint = "nvmlDeviceGetHandleByPciBusId_v2")] internal static partial int nvmlDeviceGetHandleByPciBusId(byte* pciBusId, nint* device);
        [LibraryImport(Lib)] internal static partial int nvmlDeviceGetNvLinkState(nint device, uint link, int* isActive);
        [LibraryImport(Lib)] internal static partial int nvmlDeviceGetMaxPcieLinkGeneration(nint device, uint* maxLinkGen);
        [LibraryImport(Lib)] internal static partial int nvmlDeviceGetMaxPcieLinkWidth(nint device, uint* maxLinkWidth);
        [LibraryImport(Lib)] internal static partial int nvmlDeviceGetCurrPcieLinkGeneration(nint device, uint* generation);
        [LibraryImport(Lib)] internal static partial int nvmlDeviceGetCurrPcieLinkWidth(nint device, uint* width);
        [LibraryImport(Lib, EntryPoint = "nvmlDeviceGetNvLinkRemotePciInfo_v2")] internal static partial int nvmlDeviceGetNvLinkRemotePciInfo(nint device, uint link, NvmlPciInfo* pci);
    }
}
