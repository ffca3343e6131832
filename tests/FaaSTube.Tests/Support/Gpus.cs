using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Native;
using FaaSTube.Topology;

namespace FaaSTube.Tests.Support;

/// <summary>Opens a backend for a test; CUDA tests end Inconclusive (with the reason) where there is no GPU.</summary>
internal static class Gpus
{
    public static GpuSystem Open(GpuBackend backend, GpuTopology? topology = null, long chunkBytes = 64L << 20, VirtualClock? clock = null, long simulatedMemory = 8L << 30)
    {
        if (backend == GpuBackend.Cuda && !CudaLibrary.IsAvailable)
        {
            Assert.Inconclusive($"No CUDA here: {CudaLibrary.UnavailableReason}");
        }

        return GpuSystem.Open(new GpuSystemOptions
        {
            Backend = backend,
            SimulatedTopology = topology ?? GpuTopology.SingleH100,
            CopyChunkBytes = chunkBytes,
            SimulatedClock = clock,
            SimulatedMemoryBytes = simulatedMemory,
        });
    }
}
