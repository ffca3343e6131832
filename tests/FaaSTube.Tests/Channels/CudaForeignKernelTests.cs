using System.Text;
using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Devices.Cuda;
using FaaSTube.Kernels;
using FaaSTube.Native;
using FaaSTube.Native.Handles;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// Function code with its own CUDA kernel, on its own stream (cuStreamCreate in the device's
/// context, NVRTC, cuLaunchKernel), writes a pool buffer; the library wraps that stream and
/// publishes after the kernel; a consumer process checksums the bytes on its GPU. Inconclusive without CUDA.
/// </summary>
[TestClass]
[TestCategory("Gpu")]
public sealed class CudaForeignKernelTests
{
    /// <summary>One block: slow enough (about a millisecond for 8 MiB) that a publish that did not wait would be seen.</summary>
    private const string Source = """
        extern "C" __global__ void own_fill(unsigned char* out, unsigned long long n, unsigned long long seed)
        {
            for (unsigned long long i = threadIdx.x; i < n; i += blockDim.x)
            {
                out[i] = (unsigned char)(((i + seed) * 0x9E3779B97F4A7C15ULL) >> 56);
            }
        }
        """;

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task A_kernel_of_the_functions_own_on_its_own_stream_is_published_after_it_completes_and_a_consumer_process_checks_it()
    {
        if (!CudaLibrary.IsAvailable || !CudaLibrary.IsNvrtcAvailable)
        {
            Assert.Inconclusive($"No CUDA or NVRTC here: {CudaLibrary.UnavailableReason ?? CudaLibrary.NvrtcUnavailableReason}");
        }

        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(backend: GpuBackend.Cuda);
        var producer = await h.ConnectAsync(inProcess: false);
        long length = (8L << 20) + random.Next(1, 4096); // within one of the harness's 16 MiB slabs
        ulong seed = (ulong)random.NextInt64(1, long.MaxValue);
        var output = await producer.AllocateAsync(length);
        var device = output.Device;

        var (major, minor) = ((CudaGpuDevice)device).ComputeCapability;
        byte[] image = NvrtcCompiler.Compile(Source, "own_fill.cu", [$"--gpu-architecture=sm_{major}{minor}", "--std=c++17"], cubin: true);
        var (stream, module) = LaunchOnOwnStream(device.NativeContext, image, output.Memory.Address, (ulong)length, seed);
        try
        {
            TubeId id;
            using (var wrapped = device.WrapStream(stream))
            {
                Assert.IsFalse(wrapped.OwnsNativeHandle);
                id = await producer.PublishAsync(output, wrapped);
            }

            Assert.AreEqual(CudaResult.Success, Query(device.NativeContext, stream), "the kernel had completed when the publish went out");

            using var consumer = ChildProcess.StartWith("cuda", "tube-get", h.Socket, "wf", id.ToString(), "0", Expected(length, seed).ToString());
            var (exit, text) = await consumer.WaitAsync();
            Assert.AreEqual(0, exit, text);
            Assert.AreEqual("ok", text.Trim());
        }
        finally
        {
            Destroy(device.NativeContext, stream, module); // ours: the wrapper destroyed nothing
        }
    }

    private static ulong Expected(long length, ulong seed)
    {
        var bytes = new byte[length];
        for (long i = 0; i < length; i++)
        {
            bytes[i] = (byte)(unchecked(((ulong)i + seed) * 0x9E3779B97F4A7C15UL) >> 56);
        }

        return DataChecksum.Compute(bytes);
    }

    /// <summary>What function code does with the driver API alone: its context current, its stream, its module, its launch.</summary>
    private static unsafe (nint Stream, nint Module) LaunchOnOwnStream(nint context, byte[] image, ulong destination, ulong length, ulong seed)
    {
        CudaException.ThrowIfFailed(Interop.Cuda.cuCtxPushCurrent(context), "cuCtxPushCurrent");
        try
        {
            nint stream, module, function;
            CudaException.ThrowIfFailed(Interop.Cuda.cuStreamCreate(&stream, CuFlags.StreamNonBlocking), "cuStreamCreate");
            fixed (byte* bytes = image)
            {
                CudaException.ThrowIfFailed(Interop.Cuda.cuModuleLoadData(&module, bytes), "cuModuleLoadData");
            }

            fixed (byte* name = Encoding.ASCII.GetBytes("own_fill\0"))
            {
                CudaException.ThrowIfFailed(Interop.Cuda.cuModuleGetFunction(&function, module, name), "cuModuleGetFunction");
            }

            void** args = stackalloc void*[3];
            args[0] = &destination;
            args[1] = &length;
            args[2] = &seed;
            CudaException.ThrowIfFailed(Interop.Cuda.cuLaunchKernel(function, 1, 1, 1, 256, 1, 1, 0, stream, args, null), "cuLaunchKernel");
            return (stream, module);
        }
        finally
        {
            nint popped;
            Interop.Cuda.cuCtxPopCurrent(&popped);
        }
    }

    private static unsafe CudaResult Query(nint context, nint stream)
    {
        CudaException.ThrowIfFailed(Interop.Cuda.cuCtxPushCurrent(context), "cuCtxPushCurrent");
        try
        {
            return Interop.Cuda.cuStreamQuery(stream);
        }
        finally
        {
            nint popped;
            Interop.Cuda.cuCtxPopCurrent(&popped);
        }
    }

    private static unsafe void Destroy(nint context, nint stream, nint module)
    {
        CudaException.ThrowIfFailed(Interop.Cuda.cuCtxPushCurrent(context), "cuCtxPushCurrent");
        try
        {
            CudaException.ThrowIfFailed(Interop.Cuda.cuStreamSynchronize(stream), "cuStreamSynchronize");
            CudaException.ThrowIfFailed(Interop.Cuda.cuStreamDestroy(stream), "cuStreamDestroy");
            CudaException.ThrowIfFailed(Interop.Cuda.cuModuleUnload(module), "cuModuleUnload");
        }
        finally
        {
            nint popped;
            Interop.Cuda.cuCtxPopCurrent(&popped);
        }
    }
}
