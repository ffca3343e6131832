using System.Runtime.InteropServices;

namespace FaaSTube.Native;

internal static unsafe partial class Interop
{
    /// <summary>Streams, events (incl. interprocess events), host callbacks, modules and launches.</summary>
    internal static partial class Cuda
    {
        [LibraryImport(Lib)] internal static partial CudaResult cuStreamCreate(nint* stream, uint flags);
        [LibraryImport(Lib)] internal static partial CudaResult cuStreamCreateWithPriority(nint* stream, uint flags, int priority);
        [LibraryImport(Lib)] internal static partial CudaResult cuStreamGetCtx(nint stream, nint* context);
        [LibraryImport(Lib)] internal static partial CudaResult cuStreamGetPriority(nint stream, int* priority);
        [LibraryImport(Lib, EntryPoint = "cuStreamDestroy_v2")] internal static partial CudaResult cuStreamDestroy(nint stream);
        [LibraryImport(Lib)] internal static partial CudaResult cuStreamSynchronize(nint stream);
        [LibraryImport(Lib)] internal static partial CudaResult cuStreamQuery(nint stream);
        [LibraryImport(Lib)] internal static partial CudaResult cuStreamWaitEvent(nint stream, nint cuEvent, uint flags);
        [LibraryImport(Lib)] internal static partial CudaResult cuLaunchHostFunc(nint stream, delegate* unmanaged<nint, void> callback, nint userData);

        [LibraryImport(Lib)] internal static partial CudaResult cuEventCreate(nint* cuEvent, uint flags);
        [LibraryImport(Lib, EntryPoint = "cuEventDestroy_v2")] internal static partial CudaResult cuEventDestroy(nint cuEvent);
        [LibraryImport(Lib)] internal static partial CudaResult cuEventRecord(nint cuEvent, nint stream);
        [LibraryImport(Lib)] internal static partial CudaResult cuEventQuery(nint cuEvent);
        [LibraryImport(Lib)] internal static partial CudaResult cuEventSynchronize(nint cuEvent);
        [LibraryImport(Lib)] internal static partial CudaResult cuIpcGetEventHandle(CuIpcHandle* handle, nint cuEvent);
        [LibraryImport(Lib)] internal static partial CudaResult cuIpcOpenEventHandle(nint* cuEvent, CuIpcHandle handle);

        [LibraryImport(Lib)] internal static partial CudaResult cuModuleLoadData(nint* module, void* image);
        [LibraryImport(Lib)] internal static partial CudaResult cuModuleUnload(nint module);
        [LibraryImport(Lib)] internal static partial CudaResult cuModuleGetFunction(nint* function, nint module, byte* name);
        [LibraryImport(Lib)]
        internal static partial CudaResult cuLaunchKernel(
            nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
            uint sharedMemBytes, nint stream, void** kernelParams, void** extra);
    }
}
