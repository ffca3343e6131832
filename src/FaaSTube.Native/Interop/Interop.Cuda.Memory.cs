using System.Runtime.InteropServices;

namespace FaaSTube.Native;

internal static unsafe partial class Interop
{
    /// <summary>Memory: device and host allocations, registration, copies, memset, IPC, pools and VMM.</summary>
    internal static partial class Cuda
    {
        [LibraryImport(Lib, EntryPoint = "cuMemAlloc_v2")] internal static partial CudaResult cuMemAlloc(ulong* devicePointer, nuint bytes);
        [LibraryImport(Lib, EntryPoint = "cuMemFree_v2")] internal static partial CudaResult cuMemFree(ulong devicePointer);
        [LibraryImport(Lib, EntryPoint = "cuMemGetInfo_v2")] internal static partial CudaResult cuMemGetInfo(nuint* free, nuint* total);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemHostAlloc(void** pointer, nuint bytes, uint flags);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemFreeHost(void* pointer);
        [LibraryImport(Lib, EntryPoint = "cuMemHostRegister_v2")] internal static partial CudaResult cuMemHostRegister(void* pointer, nuint bytes, uint flags);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemHostUnregister(void* pointer);
        [LibraryImport(Lib, EntryPoint = "cuMemHostGetDevicePointer_v2")] internal static partial CudaResult cuMemHostGetDevicePointer(ulong* devicePointer, void* hostPointer, uint flags);

        // Copies and memset
        [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoD_v2")] internal static partial CudaResult cuMemcpyHtoD(ulong dst, void* src, nuint bytes);
        [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoH_v2")] internal static partial CudaResult cuMemcpyDtoH(void* dst, ulong src, nuint bytes);
        [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoDAsync_v2")] internal static partial CudaResult cuMemcpyHtoDAsync(ulong dst, void* src, nuint bytes, nint stream);
        [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoHAsync_v2")] internal static partial CudaResult cuMemcpyDtoHAsync(void* dst, ulong src, nuint bytes, nint stream);
        [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoDAsync_v2")] internal static partial CudaResult cuMemcpyDtoDAsync(ulong dst, ulong src, nuint bytes, nint stream);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemcpyPeerAsync(ulong dst, nint dstContext, ulong src, nint srcContext, nuint bytes, nint stream);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemsetD8Async(ulong dst, byte value, nuint count, nint stream);

        // Legacy IPC (cuMemAlloc memory only). The handle is passed BY VALUE to the open call.
        [LibraryImport(Lib)] internal static partial CudaResult cuIpcGetMemHandle(CuIpcHandle* handle, ulong devicePointer);
        [LibraryImport(Lib, EntryPoint = "cuIpcOpenMemHandle_v2")] internal static partial CudaResult cuIpcOpenMemHandle(ulong* devicePointer, CuIpcHandle handle, uint flags);
        [LibraryImport(Lib)] internal static partial CudaResult cuIpcCloseMemHandle(ulong devicePointer);

        // Stream-ordered pools
        [LibraryImport(Lib)] internal static partial CudaResult cuDeviceGetDefaultMemPool(nint* pool, int device);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemPoolCreate(nint* pool, CuMemPoolProps* props);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemPoolDestroy(nint pool);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemPoolSetAttribute(nint pool, CuMemPoolAttribute attribute, void* value);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemPoolTrimTo(nint pool, nuint minBytesToKeep);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemAllocFromPoolAsync(ulong* devicePointer, nuint bytes, nint pool, nint stream);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemAllocAsync(ulong* devicePointer, nuint bytes, nint stream);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemFreeAsync(ulong devicePointer, nint stream);

        // Virtual memory management
        [LibraryImport(Lib)] internal static partial CudaResult cuMemGetAllocationGranularity(nuint* granularity, CuMemAllocationProp* prop, CuMemAllocationGranularity option);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemCreate(ulong* handle, nuint size, CuMemAllocationProp* prop, ulong flags);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemRelease(ulong handle);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemAddressReserve(ulong* pointer, nuint size, nuint alignment, ulong address, ulong flags);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemAddressFree(ulong pointer, nuint size);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemMap(ulong pointer, nuint size, nuint offset, ulong handle, ulong flags);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemUnmap(ulong pointer, nuint size);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemSetAccess(ulong pointer, nuint size, CuMemAccessDesc* desc, nuint count);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemExportToShareableHandle(void* shareableHandle, ulong handle, CuMemHandleType handleType, ulong flags);
        [LibraryImport(Lib)] internal static partial CudaResult cuMemImportFromShareableHandle(ulong* handle, void* osHandle, CuMemHandleType handleType);
    }
}
