using FaaSTube.Devices;

namespace FaaSTube.Tests.Memory;

/// <summary>The pool's core checks on the simulated GPU.</summary>
[TestClass]
public sealed class SimulatedPoolTests : PoolContractTests
{
    private protected override GpuBackend Backend => GpuBackend.Simulated;
}

/// <summary>The pool's core checks on a real GPU (Inconclusive where there is no CUDA).</summary>
[TestClass]
[TestCategory("Gpu")]
public sealed class CudaPoolTests : PoolContractTests
{
    private protected override GpuBackend Backend => GpuBackend.Cuda;
}
