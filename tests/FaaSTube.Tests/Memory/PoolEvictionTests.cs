using FaaSTube.Memory;
using FaaSTube.Tests.Support;
using static FaaSTube.Tests.Support.PoolHarness;

namespace FaaSTube.Tests.Memory;

[TestClass]
public sealed class PoolEvictionTests
{
    public TestContext TestContext { get; set; } = null!;

    /// <summary>Four 1 MiB slabs full of 1 MiB blocks (each fills a slab), written with seeds 1-4.</summary>
    private static async Task<PoolBlock[]> FillAsync(PoolHarness h, params double?[] hints)
    {
        var blocks = new PoolBlock[hints.Length];
        for (int i = 0; i < hints.Length; i++)
        {
            blocks[i] = await h.Pool.AllocateAsync(MiB, new BlockOptions { Function = "f", NextUse = hints[i] });
            await h.WriteAsync(blocks[i], (ulong)i + 1);
        }

        return blocks;
    }

    [TestMethod]
    public async Task Victims_are_the_blocks_needed_furthest_in_the_future()
    {
        await using var h = new PoolHarness(o => o.MaxBytes = 4 * MiB);
        var blocks = await FillAsync(h, 5, 1, null, 3); // A: 5th in the queue, B: next, C: unknown, D: 3rd

        var order = new List<int>();
        for (int i = 0; i < 4; i++)
        {
            await h.Pool.AllocateAsync(MiB, new BlockOptions { NeverEvict = true });
            order.Add(Array.FindIndex(blocks, b => !b.IsResident && !order.Contains(Array.IndexOf(blocks, b))));
        }

        CollectionAssert.AreEqual(new[] { 2, 0, 3, 1 }, order, "unknown first, then furthest (5, 3, 1)");
        Assert.AreEqual(4L, h.Pool.GetStatistics().Evictions);
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task Without_hints_the_least_recently_used_goes_first()
    {
        await using var h = new PoolHarness(o => o.MaxBytes = 3 * MiB);
        var blocks = await FillAsync(h, null, null, null);
        h.Clock.Advance(TimeSpan.FromSeconds(1));
        using (await blocks[0].UseAsync())
        {
        }

        await h.Pool.AllocateAsync(MiB);

        Assert.IsFalse(blocks[1].IsResident, "block 1 was used least recently");
        Assert.IsTrue(blocks[0].IsResident);
        Assert.IsTrue(blocks[2].IsResident);
    }

    [TestMethod]
    public async Task Evicted_data_comes_back_byte_identical_on_use_and_spills_to_files_beyond_host_memory()
    {
        await using var h = new PoolHarness(o => { o.MaxBytes = 3 * MiB; o.HostSpillBytes = MiB; });
        var blocks = await FillAsync(h, 1, 2, 3);

        var newcomers = new[] { await h.Pool.AllocateAsync(MiB, new BlockOptions { NextUse = 0 }), await h.Pool.AllocateAsync(MiB, new BlockOptions { NextUse = 0 }) };

        var stats = h.Pool.GetStatistics();
        Assert.AreEqual(MiB, stats.SpillHostBytes, "the first victim fills host spill memory");
        Assert.AreEqual(MiB, stats.SpillFileBytes, "the second goes to a file");
        Assert.IsFalse(blocks[2].IsResident);
        Assert.IsFalse(blocks[1].IsResident);
        newcomers.ToList().ForEach(b => h.Pool.Release(b, default));

        for (int i = 0; i < 3; i++)
        {
            Assert.IsTrue(await h.HoldsAsync(blocks[i], (ulong)i + 1), $"block {i} changed");
        }

        stats = h.Pool.GetStatistics();
        Assert.AreEqual(2L, stats.Restores);
        Assert.AreEqual(0L, stats.SpillHostBytes + stats.SpillFileBytes);
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task Pinned_spill_memory_works_too()
    {
        await using var h = new PoolHarness(o => { o.MaxBytes = 2 * MiB; o.PinnedSpill = true; });
        var blocks = await FillAsync(h, 1, 2);
        await h.Pool.AllocateAsync(MiB, new BlockOptions { NeverEvict = true });

        Assert.IsFalse(blocks[1].IsResident);
        Assert.IsTrue(await h.HoldsAsync(blocks[1], 2));
    }

    [TestMethod]
    public async Task A_block_in_use_or_marked_never_evict_is_never_evicted_and_the_error_says_what_holds_memory()
    {
        await using var h = new PoolHarness(o => o.MaxBytes = 2 * MiB);
        var weights = await h.Pool.AllocateAsync(MiB, new BlockOptions { Function = "weights", NeverEvict = true });
        var busy = await h.Pool.AllocateAsync(MiB, new BlockOptions { Function = "detect", NextUse = 1e9 });
        using var use = await busy.UseAsync();

        var error = await Assert.ThrowsAsync<PoolException>(async () => await h.Pool.AllocateAsync(MiB));

        Assert.AreEqual(PoolError.OutOfMemory, error.Error);
        TestContext.WriteLine(error.Message);
        StringAssert.Contains(error.Message, "weights (1 blocks, 1048576 bytes, 0 in use, 1 never evicted)");
        StringAssert.Contains(error.Message, "detect (1 blocks, 1048576 bytes, 1 in use, 0 never evicted)");
        Assert.IsTrue(weights.IsResident);
        Assert.IsTrue(busy.IsResident);
        Assert.AreEqual(0L, h.Pool.GetStatistics().Evictions);
    }

    [TestMethod]
    public async Task When_the_spill_store_is_full_nothing_is_evicted_and_nothing_lost()
    {
        await using var h = new PoolHarness(o => { o.MaxBytes = 2 * MiB; o.HostSpillBytes = 0; o.MaxSpillFileBytes = 0; });
        var blocks = await FillAsync(h, 1, 2);

        Assert.AreEqual(PoolError.OutOfMemory, (await Assert.ThrowsAsync<PoolException>(async () => await h.Pool.AllocateAsync(MiB))).Error);

        Assert.IsTrue(await h.HoldsAsync(blocks[0], 1));
        Assert.IsTrue(await h.HoldsAsync(blocks[1], 2));
    }

    [TestMethod]
    public async Task A_waiting_allocation_proceeds_when_memory_is_freed()
    {
        await using var h = new PoolHarness(o => { o.MaxBytes = MiB; o.HostSpillBytes = 0; o.MaxSpillFileBytes = 0; o.AllocationTimeout = TimeSpan.FromSeconds(60); });
        var held = await h.Pool.AllocateAsync(MiB);
        var waiting = h.Pool.AllocateAsync(MiB).AsTask();
        Assert.IsFalse(waiting.IsCompleted);

        h.Pool.Release(held, default);
        var block = await waiting.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.IsTrue(block.IsResident);
    }

    [TestMethod]
    public async Task A_waiting_allocation_can_be_cancelled()
    {
        await using var h = new PoolHarness(o => { o.MaxBytes = MiB; o.HostSpillBytes = 0; o.MaxSpillFileBytes = 0; o.AllocationTimeout = TimeSpan.FromSeconds(60); });
        await h.Pool.AllocateAsync(MiB);
        using var cts = new CancellationTokenSource();
        var waiting = h.Pool.AllocateAsync(MiB, cancellationToken: cts.Token).AsTask();

        cts.Cancel();

        await Assert.ThrowsAsync<OperationCanceledException>(async () => await waiting);
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task Evicted_blocks_are_restored_when_memory_frees_up_soonest_needed_first()
    {
        await using var h = new PoolHarness(o => o.MaxBytes = 3 * MiB);
        var blocks = await FillAsync(h, 3, 2, 1);
        var a = await h.Pool.AllocateAsync(MiB, new BlockOptions { NeverEvict = true });
        var b = await h.Pool.AllocateAsync(MiB, new BlockOptions { NeverEvict = true });
        Assert.IsFalse(blocks[0].IsResident);
        Assert.IsFalse(blocks[1].IsResident);

        h.Pool.Release(a, default);
        Assert.AreEqual(1, await h.Pool.RestoreEvictedAsync());

        Assert.IsTrue(blocks[1].IsResident, "needed sooner (2) than block 0 (3)");
        Assert.IsFalse(blocks[0].IsResident);
        h.Pool.Release(b, default);
        Assert.AreEqual(1, await h.Pool.RestoreEvictedAsync());
        for (int i = 0; i < 3; i++)
        {
            Assert.IsTrue(await h.HoldsAsync(blocks[i], (ulong)i + 1));
        }

        Assert.AreEqual(0L, h.Pool.GetStatistics().Evictions - h.Pool.GetStatistics().Restores);
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task Releasing_an_evicted_block_frees_its_spill_entry_at_once()
    {
        await using var h = new PoolHarness(o => o.MaxBytes = MiB);
        var first = await h.Pool.AllocateAsync(MiB);
        await h.Pool.AllocateAsync(MiB);
        Assert.AreEqual(MiB, h.Pool.GetStatistics().SpillHostBytes);

        h.Pool.Release(first, default);

        Assert.IsTrue(first.IsFreed);
        Assert.AreEqual(0L, h.Pool.GetStatistics().SpillHostBytes);
    }

    [TestMethod]
    public async Task With_proactive_restore_a_free_brings_evicted_data_back_by_itself()
    {
        await using var h = new PoolHarness(o => { o.MaxBytes = 2 * MiB; o.ProactiveRestore = true; });
        var blocks = await FillAsync(h, 2, 1);
        var temporary = await h.Pool.AllocateAsync(MiB, new BlockOptions { NeverEvict = true });
        Assert.IsFalse(blocks[0].IsResident);

        h.Pool.Release(temporary, default);
        await h.Pool.ProactiveRestore.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.IsTrue(blocks[0].IsResident);
        Assert.IsTrue(await h.HoldsAsync(blocks[0], 1));
        Assert.AreEqual(1L, h.Pool.GetStatistics().Restores);
    }
}
