using System.Runtime.InteropServices;

namespace FaaSTube.Native;

/// <summary>
/// The CUDA driver API (libcuda), source-generated and blittable. Device pointers are
/// <c>ulong</c> (CUdeviceptr), driver objects are <c>nint</c>. The <c>_v2</c> entry points are
/// bound where they exist. Split by area: this file holds init, devices and contexts.
/// </summary>
internal static unsafe partial class Interop
{
    internal static partial class Cuda
    {
        private const string Lib = CudaLibrary.DriverName;

        [LibraryImport(Lib)] internal static partial CudaResult cuInit(uint flags);
        [LibraryImport(Lib)] internal static partial CudaResult cuDriverGetVersion(int* version);
        [LibraryImport(Lib)] internal static partial CudaResult cuGetErrorName(CudaResult error, byte** name);
        [LibraryImport(Lib)] internal static partial CudaResult cuGetErrorString(CudaResult error, byte** text);

        // Devices
        [LibraryImport(Lib)] internal static partial CudaResult cuDeviceGetCount(int* count);
        [LibraryImport(Lib)] internal static partial CudaResult cuDeviceGet(int* device, int ordinal);
        [LibraryImport(Lib)] internal static partial CudaResult cuDeviceGetName(byte* name, int length, int device);
        [LibraryImport(Lib, EntryPoint = "cuDeviceTotalMem_v2")] internal static partial CudaResult cuDeviceTotalMem(nuint* bytes, int device);
        [LibraryImport(Lib)] internal static partial CudaResult cuDeviceGetAttribute(int* value, CuDeviceAttribute attribute, int device);
        [LibraryImport(Lib)] internal static partial CudaResult cuDeviceGetPCIBusId(byte* busId, int length, int device);
        [LibraryImport(Lib)] internal static partial CudaResult cuDeviceCanAccessPeer(int* canAccess, int device, int peerDevice);
        [LibraryImport(Lib)] internal static partial CudaResult cuDeviceGetP2PAttribute(int* value, CuP2PAttribute attribute, int srcDevice, int dstDevice);

        // Contexts
        [LibraryImport(Lib)] internal static partial CudaResult cuDevicePrimaryCtxRetain(nint* context, int device);
        [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] internal static partial CudaResult cuDevicePrimaryCtxRelease(int device);
        [LibraryImport(Lib)] internal static partial CudaResult cuCtxSetCurrent(nint context);
        [LibraryImport(Lib)] internal static partial CudaResult cuCtxGetCurrent(nint* context);
        [LibraryImport(Lib, EntryPoint = "cuCtxPushCurrent_v2")] internal static partial CudaResult cuCtxPushCurrent(nint context);
        [LibraryImport(Lib, EntryPoint = "cuCtxPopCurrent_v2")] internal static partial CudaResult cuCtxPopCurrent(nint* context);
        [LibraryImport(Lib)] internal static partial CudaResult cuCtxSynchronize();
        [LibraryImport(Lib)] internal static partial CudaResult cuCtxGetStreamPriorityRange(int* leastPriority, int* greatestPriority);
        [LibraryImport(Lib)] internal static partial CudaResult cuCtxEnablePeerAccess(nint peerContext, uint flags);
        [LibraryImport(Lib)] internal static partial CudaResult cuCtxDisablePeerAccess(nint peerContext);
    }
}
