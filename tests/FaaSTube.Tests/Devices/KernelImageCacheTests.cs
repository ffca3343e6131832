using FaaSTube.Devices.Cuda;

namespace FaaSTube.Tests.Devices;

/// <summary>The process-wide cache of compiled kernels: one compile per (source, architecture), whatever the number of devices.</summary>
[TestClass]
public sealed class KernelImageCacheTests
{
    [TestMethod]
    public void The_key_is_the_source_hash_and_the_architecture()
    {
        var a = CudaKernelImages.KeyOf("__global__ void k() {}", "sm_90");

        Assert.AreEqual(a, CudaKernelImages.KeyOf("__global__ void k() {}", "sm_90"));
        Assert.AreNotEqual(a, CudaKernelImages.KeyOf("__global__ void k() {}", "sm_80"));
        Assert.AreNotEqual(a, CudaKernelImages.KeyOf("__global__ void k() { }", "sm_90"));
        Assert.AreEqual(64, a.SourceHash.Length, "SHA-256 in hex");
    }

    [TestMethod]
    public async Task Concurrent_devices_of_one_architecture_compile_once_and_another_architecture_compiles_again()
    {
        string source = $"// {Guid.NewGuid()}\n__global__ void k() {{}}"; // unique to this test run
        int compiles = 0;
        byte[] Compile(string src, string arch)
        {
            Interlocked.Increment(ref compiles);
            return System.Text.Encoding.ASCII.GetBytes(arch);
        }

        var images = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => CudaKernelImages.Get(source, "sm_90", Compile))));
        var other = CudaKernelImages.Get(source, "sm_80", Compile);

        Assert.AreEqual(2, compiles);
        Assert.IsTrue(images.All(i => ReferenceEquals(i, images[0])));
        Assert.AreEqual("sm_80", System.Text.Encoding.ASCII.GetString(other));
    }

    [TestMethod]
    public void A_failed_compile_is_not_cached()
    {
        string source = $"// {Guid.NewGuid()}";
        int calls = 0;
        byte[] FailOnce(string src, string arch) => Interlocked.Increment(ref calls) == 1 ? throw new InvalidOperationException("scripted compile error") : [1];

        Assert.ThrowsExactly<InvalidOperationException>(() => CudaKernelImages.Get(source, "sm_90", FailOnce));
        CollectionAssert.AreEqual(new byte[] { 1 }, CudaKernelImages.Get(source, "sm_90", FailOnce));
    }
}
