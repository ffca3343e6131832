using FaaSTube.Devices;
using FaaSTube.Tests.Support;
using FaaSTube.Transfers;

namespace FaaSTube.Tests.Transfers;

/// <summary>Pinned rentals: buffers the pool does not keep are freed, so pinned memory follows the peak of rentals.</summary>
[TestClass]
public sealed class PinnedRentalTests
{
    [TestMethod]
    public void Buffers_returned_beyond_what_the_pool_keeps_are_freed()
    {
        using var gpus = Gpus.Open(GpuBackend.Simulated);
        using var pool = new PinnedBufferPool(gpus.Devices[0]);
        int burst = PinnedBufferPool.KeptPerClass + 12;
        var rentals = Enumerable.Range(0, burst).Select(_ => pool.Rent(100_000)).ToArray();
        var memories = rentals.Select(r => r.Memory).ToArray();

        foreach (var rental in rentals)
        {
            rental.Dispose();
        }

        Assert.AreEqual(PinnedBufferPool.KeptPerClass, pool.IdleCount);
        int freed = memories.Count(IsFreed);
        Assert.AreEqual(burst - PinnedBufferPool.KeptPerClass, freed, "pinned buffers the pool dropped are still allocated");
    }

    [TestMethod]
    public void Disposing_the_pool_frees_idle_buffers_and_a_rental_returned_afterwards()
    {
        using var gpus = Gpus.Open(GpuBackend.Simulated);
        var pool = new PinnedBufferPool(gpus.Devices[0]);
        var held = pool.Rent(70_000);
        var heldMemory = held.Memory;
        var idle = pool.Rent(70_000);
        var idleMemory = idle.Memory;
        idle.Dispose();

        pool.Dispose();
        Assert.IsTrue(IsFreed(idleMemory));
        Assert.IsFalse(IsFreed(heldMemory), "a rental in use is not freed under its user");
        held.Dispose();

        Assert.IsTrue(IsFreed(heldMemory));
    }

    private static bool IsFreed(Memory<byte> memory)
    {
        try
        {
            _ = memory.Span;
            return false;
        }
        catch (ObjectDisposedException)
        {
            return true;
        }
    }
}
