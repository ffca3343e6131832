using FaaSTube.Memory;
using FaaSTube.Tests.Support;
using static FaaSTube.Tests.Support.PoolHarness;

namespace FaaSTube.Tests.Memory;

[TestClass]
public sealed class PoolElasticityTests
{
    [TestMethod]
    public async Task Growth_stops_at_half_of_the_free_device_memory()
    {
        await using var h = new PoolHarness(o => { o.SlabBytes = 16 * MiB; o.HostSpillBytes = 0; o.MaxSpillFileBytes = 0; }, deviceMemory: 64 * MiB);
        var blocks = new List<PoolBlock>();
        for (int i = 0; i < 3; i++)
        {
            blocks.Add(await h.Pool.AllocateAsync(16 * MiB)); // free 64 -> 48 -> 32 -> 16 MiB: each 16 MiB slab is <= half of free
        }

        var error = await Assert.ThrowsAsync<PoolException>(async () => await h.Pool.AllocateAsync(16 * MiB));

        Assert.AreEqual(PoolError.OutOfMemory, error.Error);
        StringAssert.Contains(error.Message, "Held by: default (3 blocks");
        Assert.AreEqual(3, h.Pool.GetStatistics().Slabs);
        Assert.AreEqual(48 * MiB, h.Pool.GetStatistics().ReservedBytes);
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task Growth_stops_at_the_configured_cap()
    {
        await using var h = new PoolHarness(o => { o.MaxBytes = 2 * MiB; o.HostSpillBytes = 0; o.MaxSpillFileBytes = 0; });
        await h.Pool.AllocateAsync(MiB);
        await h.Pool.AllocateAsync(MiB);

        Assert.AreEqual(PoolError.OutOfMemory, (await Assert.ThrowsAsync<PoolException>(async () => await h.Pool.AllocateAsync(1))).Error);
        Assert.AreEqual(2 * MiB, h.Pool.GetStatistics().ReservedBytes);
    }

    [TestMethod]
    public async Task A_request_larger_than_a_slab_gets_a_slab_of_its_own()
    {
        await using var h = new PoolHarness();
        var big = await h.Pool.AllocateAsync(3 * MiB + 5);
        await h.WriteAsync(big, 42);

        Assert.AreEqual(4 * MiB, h.Pool.GetStatistics().ReservedBytes, "rounded up to whole MiB");
        Assert.IsTrue(await h.HoldsAsync(big, 42));
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task Empty_slabs_go_back_after_the_idle_window_once_the_function_is_idle()
    {
        await using var h = new PoolHarness(o => o.MinIdleTime = TimeSpan.FromSeconds(10));
        var blocks = new List<PoolBlock>();
        for (int i = 0; i < 4; i++)
        {
            blocks.Add(await h.Pool.AllocateAsync(MiB, new BlockOptions { Function = "resize" }));
        }

        Assert.AreEqual(4 * MiB, h.Pool.TargetBytes, "p99 size 1 MiB x p99 concurrency 4");
        blocks.ForEach(b => h.Pool.Release(b, default));

        h.Clock.Advance(TimeSpan.FromSeconds(5));
        Assert.AreEqual(0L, h.Pool.Trim(), "not idle long enough");
        Assert.AreEqual(4, h.Pool.GetStatistics().Slabs);

        h.Clock.Advance(TimeSpan.FromSeconds(6));
        Assert.AreEqual(0L, h.Pool.TargetBytes, "no request within the window: the function is inactive");
        Assert.AreEqual(4 * MiB, h.Pool.Trim());
        Assert.AreEqual(0L, h.Pool.GetStatistics().ReservedBytes);
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task An_active_function_keeps_its_reservation_and_the_floor_is_kept()
    {
        await using var h = new PoolHarness(o => { o.MinIdleTime = TimeSpan.FromSeconds(10); o.FloorBytes = MiB; });
        var burst = new List<PoolBlock>();
        for (int i = 0; i < 3; i++)
        {
            burst.Add(await h.Pool.AllocateAsync(MiB, new BlockOptions { Function = "detect" }));
        }

        burst.ForEach(b => h.Pool.Release(b, default));
        for (int i = 0; i < 3; i++)
        {
            h.Clock.Advance(TimeSpan.FromSeconds(6));
            h.Pool.Release(await h.Pool.AllocateAsync(MiB, new BlockOptions { Function = "detect" }), default); // keeps arriving
            h.Pool.Trim();
            Assert.AreEqual(3 * MiB, h.Pool.GetStatistics().ReservedBytes, "the active function's p99 x p99 stays reserved");
        }

        h.Clock.Advance(TimeSpan.FromSeconds(61));
        h.Pool.Trim();

        Assert.AreEqual(MiB, h.Pool.GetStatistics().ReservedBytes, "down to the floor");
    }

    [TestMethod]
    public async Task A_slab_an_importer_has_open_retires_and_is_freed_only_when_closed()
    {
        await using var h = new PoolHarness();
        var block = await h.Pool.AllocateAsync(1000);
        var d = await DescriptorAsync(block);

        var handle = h.Pool.OpenSlab(d.SlabId, d.Generation, importer: new LeaseHolder(7));
        Assert.AreSame(handle, h.Pool.OpenSlab(d.SlabId, d.Generation, importer: new LeaseHolder(8)), "exported once");
        h.Pool.CloseSlab(d.SlabId, d.Generation, importer: new LeaseHolder(8));
        Assert.AreEqual(1, h.Pool.GetSlabs().Single().Exports);
        var retiring = new List<SlabRetiringEventArgs>();
        h.Pool.SlabRetiring += (_, e) => retiring.Add(e);
        h.Pool.Release(block, default);
        h.Clock.Advance(TimeSpan.FromMinutes(2));

        h.Pool.Trim();

        Assert.AreEqual(1, retiring.Count);
        CollectionAssert.AreEqual(new[] { new LeaseHolder(7) }, retiring[0].Importers.ToArray());
        Assert.AreEqual(SlabState.Retiring, h.Pool.GetSlabs().Single().State);
        Assert.AreEqual(MiB, h.Pool.GetStatistics().ReservedBytes, "not freed while importer 7 has it open");
        Assert.AreEqual(PoolError.Stale, Assert.ThrowsExactly<PoolException>(() => h.Pool.OpenSlab(d.SlabId, d.Generation, new LeaseHolder(9))).Error);
        var next = await h.Pool.AllocateAsync(1000);
        using (var use = await next.UseAsync())
        {
            Assert.AreNotEqual(d.SlabId, use.Descriptor.SlabId, "a retiring slab takes no allocations");
        }

        h.Pool.CloseSlab(d.SlabId, d.Generation, importer: new LeaseHolder(7));

        Assert.AreEqual(1, h.Pool.GetSlabs().Count);
        Assert.AreEqual(MiB, h.Pool.GetStatistics().ReservedBytes);
        Assert.AreEqual(PoolError.Stale, Assert.ThrowsExactly<PoolException>(() => h.Pool.OpenSlab(d.SlabId, d.Generation, new LeaseHolder(7))).Error);
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task A_retiring_slab_is_freed_when_its_importer_is_declared_dead()
    {
        await using var h = new PoolHarness();
        var block = await h.Pool.AllocateAsync(1000);
        var d = await DescriptorAsync(block);

        h.Pool.OpenSlab(d.SlabId, d.Generation, importer: new LeaseHolder(3));
        h.Pool.Release(block, default);
        h.Clock.Advance(TimeSpan.FromMinutes(2));
        h.Pool.Trim();
        Assert.AreEqual(MiB, h.Pool.GetStatistics().ReservedBytes);

        h.Pool.ImporterGone(new LeaseHolder(3));

        Assert.AreEqual(0L, h.Pool.GetStatistics().ReservedBytes);
        Assert.AreEqual(0, h.Pool.GetSlabs().Count);
    }

    [TestMethod]
    public async Task A_freed_slot_gets_a_new_generation_and_old_descriptors_go_stale()
    {
        await using var h = new PoolHarness();
        var first = await h.Pool.AllocateAsync(100);
        var old = await DescriptorAsync(first);

        h.Pool.Release(first, default);
        h.Clock.Advance(TimeSpan.FromMinutes(2));
        h.Pool.Trim();
        var second = await h.Pool.AllocateAsync(100);
        using var again = await second.UseAsync();

        Assert.AreEqual(old.SlabId, again.Descriptor.SlabId, "the slot is reused");
        Assert.AreEqual(old.Generation + 1, again.Descriptor.Generation);
        Assert.AreEqual(PoolError.Stale, Assert.ThrowsExactly<PoolException>(() => h.Pool.OpenSlab(old.SlabId, old.Generation, new LeaseHolder(1))).Error);
    }
}
