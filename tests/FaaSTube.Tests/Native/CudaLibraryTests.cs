using System.Runtime.CompilerServices;
using FaaSTube.Devices;
using FaaSTube.Native;
using FaaSTube.Native.Handles;

namespace FaaSTube.Tests.Native;

[TestClass]
public sealed class CudaLibraryTests
{
    [TestMethod]
    public void Without_a_driver_cuda_is_unavailable_with_a_reason_and_use_throws_PlatformNotSupported()
    {
        if (CudaLibrary.IsAvailable)
        {
            Assert.Inconclusive("A CUDA driver is present; the missing-driver path cannot be observed here.");
        }

        StringAssert.Contains(CudaLibrary.UnavailableReason, "libcuda");
        var error = Assert.ThrowsExactly<PlatformNotSupportedException>(
            () => GpuSystem.Open(new GpuSystemOptions { Backend = GpuBackend.Cuda }));
        StringAssert.Contains(error.Message, CudaLibrary.UnavailableReason!);
    }

    [TestMethod]
    public void Without_nvrtc_compiling_throws_PlatformNotSupported_with_the_reason()
    {
        if (CudaLibrary.IsNvrtcAvailable)
        {
            Assert.Inconclusive("NVRTC is present; the missing-library path cannot be observed here.");
        }

        StringAssert.Contains(CudaLibrary.NvrtcUnavailableReason, "libnvrtc.so.13");
        var error = Assert.ThrowsExactly<PlatformNotSupportedException>(() => NvrtcCompiler.Compile("", "x.cu", [], cubin: false));
        StringAssert.Contains(error.Message, "NVRTC");
    }

    [TestMethod]
    public void Auto_falls_back_to_the_simulated_gpu_and_says_why()
    {
        var (backend, reason) = GpuSystem.Choose(GpuBackend.Auto, variable: null);

        Assert.AreEqual(CudaLibrary.IsAvailable ? GpuBackend.Cuda : GpuBackend.Simulated, backend);
        Assert.IsFalse(string.IsNullOrWhiteSpace(reason));
    }

    [TestMethod]
    public void The_environment_variable_overrides_auto_but_not_an_explicit_choice()
    {
        Assert.AreEqual(GpuBackend.Simulated, GpuSystem.Choose(GpuBackend.Auto, "simulated").Backend);
        Assert.AreEqual(GpuBackend.Cuda, GpuSystem.Choose(GpuBackend.Auto, "CUDA").Backend);
        Assert.AreEqual(GpuBackend.Simulated, GpuSystem.Choose(GpuBackend.Simulated, "cuda").Backend);
        Assert.ThrowsExactly<ArgumentException>(() => GpuSystem.Choose(GpuBackend.Auto, "tpu"));
    }

    [TestMethod]
    public void A_failed_call_throws_one_exception_with_code_name_and_call_text()
    {
        var result = CudaResult.ErrorOutOfMemory;

        var error = Assert.ThrowsExactly<CudaException>(() => CudaException.ThrowIfFailed(result));

        Assert.AreEqual(CudaResult.ErrorOutOfMemory, error.Result);
        Assert.AreEqual("CUDA_ERROR_OUT_OF_MEMORY", error.ErrorName);
        Assert.AreEqual("result", error.Call);
        StringAssert.Contains(error.Message, "CUDA_ERROR_OUT_OF_MEMORY (2)");
    }

    [TestMethod]
    public void Success_does_not_throw_and_unknown_codes_keep_their_number()
    {
        CudaException.ThrowIfFailed(CudaResult.Success);
        var error = new CudaException((CudaResult)12345, "cuSomething()");
        Assert.AreEqual(CudaLibrary.IsAvailable ? error.ErrorName : "CUDA_ERROR_12345", error.ErrorName);
    }

    [TestMethod]
    public void Native_structs_have_the_sizes_of_the_driver_headers()
    {
        Assert.AreEqual(64, Unsafe.SizeOf<CuIpcHandle>());
        Assert.AreEqual(8, Unsafe.SizeOf<CuMemLocation>());
        Assert.AreEqual(32, Unsafe.SizeOf<CuMemAllocationProp>());
        Assert.AreEqual(12, Unsafe.SizeOf<CuMemAccessDesc>());
        Assert.AreEqual(88, Unsafe.SizeOf<CuMemPoolProps>());
    }
}
