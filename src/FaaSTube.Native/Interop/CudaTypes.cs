using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FaaSTube.Native;

/// <summary>CUipcMemHandle / CUipcEventHandle: 64 opaque bytes, passed by value to the open calls.</summary>
[InlineArray(Size)]
internal struct CuIpcHandle
{
    public const int Size = 64;
    private byte _element0;
}

/// <summary>CUmemLocation.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CuMemLocation
{
    public CuMemLocationType Type;
    public int Id;
}

/// <summary>CUmemAllocationProp (32 bytes on 64-bit).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CuMemAllocationProp
{
    public CuMemAllocationType Type;
    public CuMemHandleType RequestedHandleTypes;
    public CuMemLocation Location;
    public nint Win32HandleMetaData;
    public byte CompressionType;
    public byte GpuDirectRdmaCapable;
    public ushort Usage;
    public uint Reserved;
}

/// <summary>CUmemAccessDesc.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CuMemAccessDesc
{
    public CuMemLocation Location;
    public CuMemAccessFlags Flags;
}

/// <summary>CUmemPoolProps (88 bytes on 64-bit).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CuMemPoolProps
{
    public CuMemAllocationType AllocType;
    public CuMemHandleType HandleTypes;
    public CuMemLocation Location;
    public nint Win32SecurityAttributes;
    public nuint MaxSize;
    public ushort Usage;
    public Reserved54 Reserved;

    [InlineArray(54)]
    public struct Reserved54
    {
        private byte _element0;
    }
}

internal enum CuMemLocationType { Invalid = 0, Device = 1, Host = 2, HostNuma = 3 }

internal enum CuMemAllocationType { Invalid = 0, Pinned = 1 }

[Flags]
internal enum CuMemHandleType { None = 0, PosixFileDescriptor = 1, Win32 = 2, Win32Kmt = 4, Fabric = 8 }

internal enum CuMemAccessFlags { None = 0, Read = 1, ReadWrite = 3 }

internal enum CuMemAllocationGranularity { Minimum = 0, Recommended = 1 }

internal enum CuMemPoolAttribute
{
    ReuseFollowEventDependencies = 1,
    ReuseAllowOpportunistic = 2,
    ReuseAllowInternalDependencies = 3,
    ReleaseThreshold = 4,
    ReservedMemCurrent = 5,
    ReservedMemHigh = 6,
    UsedMemCurrent = 7,
    UsedMemHigh = 8,
}

/// <summary>CUdevice_attribute values this library reads.</summary>
internal enum CuDeviceAttribute
{
    MaxThreadsPerBlock = 1,
    MultiprocessorCount = 16,
    PciBusId = 33,
    PciDeviceId = 34,
    AsyncEngineCount = 40,
    UnifiedAddressing = 41,
    PciDomainId = 50,
    ComputeCapabilityMajor = 75,
    ComputeCapabilityMinor = 76,
    MemoryPoolsSupported = 115,
    VirtualMemoryManagementSupported = 102,
}

/// <summary>CUdevice_P2PAttribute.</summary>
internal enum CuP2PAttribute
{
    PerformanceRank = 1,
    AccessSupported = 2,
    NativeAtomicSupported = 3,
    CudaArrayAccessSupported = 4,
}

internal static class CuFlags
{
    public const uint MemHostAllocPortable = 0x01;
    public const uint MemHostAllocDeviceMap = 0x02;
    public const uint MemHostRegisterPortable = 0x01;
    public const uint MemHostRegisterDeviceMap = 0x02;
    public const uint StreamNonBlocking = 0x1;
    public const uint EventBlockingSync = 0x1;
    public const uint EventDisableTiming = 0x2;
    public const uint EventInterprocess = 0x4;
    public const uint IpcMemLazyEnablePeerAccess = 0x1;
}
