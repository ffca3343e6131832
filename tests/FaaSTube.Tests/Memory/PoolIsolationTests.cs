using FaaSTube.Devices;
using FaaSTube.Memory;
using FaaSTube.Tests.Support;
using static FaaSTube.Tests.Support.PoolHarness;

namespace FaaSTube.Tests.Memory;

/// <summary>The pool's isolation between partitions on the simulated GPU.</summary>
[TestClass]
public sealed class SimulatedPoolIsolationTests : PoolIsolationTests
{
    private protected override GpuBackend Backend => GpuBackend.Simulated;
}

/// <summary>The pool's isolation between partitions on a real GPU (Inconclusive where there is no CUDA).</summary>
[TestClass]
[TestCategory("Gpu")]
public sealed class CudaPoolIsolationTests : PoolIsolationTests
{
    private protected override GpuBackend Backend => GpuBackend.Cuda;
}

/// <summary>
/// Partitions (slabs never shared, memory cleared before it changes owner), sizes refused before any
/// state is touched, pins taken after allocation, and bounded function statistics.
/// </summary>
public abstract class PoolIsolationTests
{
    public TestContext TestContext { get; set; } = null!;

    private protected abstract GpuBackend Backend { get; }

    private PoolHarness Harness(Action<GpuPoolOptions>? configure = null) => new(configure, backend: Backend);

    private static BlockOptions In(string partition, double? nextUse = null) => new() { Function = "f-" + partition, Partition = partition, NextUse = nextUse };

    [TestMethod]
    public async Task Partitions_never_share_a_slab_and_a_slab_never_changes_partition()
    {
        var random = Seeds.Create(TestContext);
        await using var h = Harness(o => o.MaxBytes = 8 * MiB);
        string[] partitions = ["a", "b", "c"];
        var live = new List<(PoolBlock Block, ulong Seed)>();
        var owners = new Dictionary<(int Id, int Generation), string>();
        for (int step = 0; step < 300; step++)
        {
            if (live.Count > 0 && random.Next(5) < 2)
            {
                int i = random.Next(live.Count);
                var (block, seed) = live[i];
                Assert.IsTrue(await h.HoldsAsync(block, seed), $"step {step}: {block} lost its bytes");
                h.Pool.Release(block, default);
                live.RemoveAt(i);
            }
            else
            {
                string partition = partitions[random.Next(partitions.Length)];
                var block = await h.Pool.AllocateAsync(random.Next(1, 700 << 10), In(partition)); // never refused: every other block can be evicted
                ulong seed = (ulong)random.NextInt64();
                await h.WriteAsync(block, seed);
                live.Add((block, seed));
            }

            if (random.Next(10) == 0)
            {
                h.Clock.Advance(TimeSpan.FromSeconds(random.Next(1, 30)));
                h.Pool.Trim();
            }

            h.Pool.CheckInvariants(); // every block in a slab of its own partition
            foreach (var slab in h.Pool.GetSlabs())
            {
                if (owners.TryGetValue((slab.Id, slab.Generation), out var owner))
                {
                    Assert.AreEqual(owner, slab.Partition, $"step {step}: slab {slab.Id} generation {slab.Generation} changed partition");
                }

                owners[(slab.Id, slab.Generation)] = slab.Partition;
            }

            foreach (var (block, _) in live.Where(l => l.Block.IsResident))
            {
                var d = await DescriptorAsync(block);
                Assert.AreEqual(block.Partition, owners[(d.SlabId, d.Generation)], $"step {step}: {block} sits in another partition's slab");
            }
        }

        foreach (var (block, seed) in live)
        {
            Assert.IsTrue(await h.HoldsAsync(block, seed), $"{block} lost its bytes");
        }

        Assert.IsGreaterThan(1, owners.Values.Distinct().Count(), "the run used several partitions");
        Assert.IsGreaterThan(8, owners.Count, "slabs were freed and regrown, so memory moved between partitions");
        TestContext.WriteLine($"{owners.Count} slabs over the run, {h.Pool.GetStatistics().Evictions} evictions");
    }

    [TestMethod]
    public async Task A_new_partitions_first_block_reads_zeros_after_another_partition_wrote_there()
    {
        await using var h = Harness(o => { o.MaxBytes = MiB; o.AlwaysClearNewSlabs = true; });
        var secret = await h.Pool.AllocateAsync(MiB, In("a"));
        await h.WriteAsync(secret, 0xA5A5);
        var old = await DescriptorAsync(secret);
        h.Pool.Release(secret, default);
        long cleared = h.Pool.SlabsCleared;

        var fresh = await h.Pool.AllocateAsync(MiB, In("b")); // the cap forces a's empty slab back to the device, then a new one

        var slab = h.Pool.GetSlabs().Single();
        Assert.AreEqual("b", slab.Partition);
        Assert.IsFalse(slab.Id == old.SlabId && slab.Generation == old.Generation, "a's slab was freed, not handed over");
        Assert.AreEqual(cleared + 1, h.Pool.SlabsCleared, "the new slab was zero-filled on the device before its first block");
        var bytes = new byte[MiB];
        using (var use = await fresh.UseAsync())
        {
            await h.Stream.CopyAsync(use.Memory, bytes);
        }

        int dirty = Array.FindIndex(bytes, b => b != 0);
        Assert.AreEqual(-1, dirty, $"byte {dirty} of b's first block is not zero");
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task Sizes_the_device_could_never_hold_fail_at_once_with_TooLarge_and_change_nothing()
    {
        await using var h = Harness(o => { o.MaxBytes = 2 * MiB; o.AllocationTimeout = TimeSpan.FromMinutes(5); });
        var resident = await h.Pool.AllocateAsync(MiB, In("a"));
        await h.WriteAsync(resident, 7);
        var before = h.Pool.GetStatistics();
        int windows = h.Pool.FunctionCount;

        foreach (long bytes in new[] { long.MaxValue, (1L << 40), long.MaxValue - 254, long.MaxValue - ExtentAllocator.Alignment, 2 * MiB + 1, h.Gpus.Devices[0].TotalMemory + 1 })
        {
            var pending = h.Pool.AllocateAsync(bytes, In("b"));
            Assert.IsTrue(pending.IsCompleted, $"{bytes} bytes: refused at once, with no wait");
            var error = await Assert.ThrowsAsync<PoolException>(async () => await pending);
            Assert.AreEqual(PoolError.TooLarge, error.Error, $"{bytes} bytes");
            StringAssert.Contains(error.Message, bytes.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        var after = h.Pool.GetStatistics();
        Assert.AreEqual(before.InUseBytes, after.InUseBytes);
        Assert.AreEqual(before.ReservedBytes, after.ReservedBytes);
        Assert.AreEqual(before.Blocks, after.Blocks);
        Assert.AreEqual(before.Allocations, after.Allocations);
        Assert.AreEqual(0L, after.Evictions, "no one's block was evicted for it");
        Assert.AreEqual(windows, h.Pool.FunctionCount, "no statistics were touched");
        Assert.IsTrue(resident.IsResident);
        Assert.IsTrue(await h.HoldsAsync(resident, 7));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ExtentAllocator.Round(long.MaxValue), "rounding never wraps");
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task Pressure_from_one_partition_frees_anothers_empty_slabs_and_evicts_its_blocks_intact()
    {
        var random = Seeds.Create(TestContext);
        await using var h = Harness(o => o.MaxBytes = 4 * MiB);
        var a = new List<(PoolBlock Block, ulong Seed)>();
        for (int i = 0; i < 4; i++)
        {
            var block = await h.Pool.AllocateAsync(MiB, In("a"));
            ulong seed = (ulong)random.NextInt64();
            await h.WriteAsync(block, seed);
            a.Add((block, seed));
        }

        h.Pool.Release(a[0].Block, default);
        h.Pool.Release(a[1].Block, default);
        a.RemoveRange(0, 2);

        var b = new List<(PoolBlock Block, ulong Seed)>();
        for (int i = 0; i < 2; i++)
        {
            var block = await h.Pool.AllocateAsync(MiB, In("b"));
            ulong seed = (ulong)random.NextInt64();
            await h.WriteAsync(block, seed);
            b.Add((block, seed));
        }

        Assert.AreEqual(0L, h.Pool.GetStatistics().Evictions, "a's two empty slabs were freed: no block had to go");
        Assert.IsTrue(a.All(x => x.Block.IsResident));
        CollectionAssert.AreEquivalent(new[] { "a", "a", "b", "b" }, h.Pool.GetSlabs().Select(s => s.Partition).ToArray());

        PoolBlock third;
        using (await b[0].Block.UseAsync())
        using (await b[1].Block.UseAsync())
        {
            third = await h.Pool.AllocateAsync(MiB, In("b")); // b's own blocks are in use: only a's can give
        }

        Assert.AreEqual(1L, h.Pool.GetStatistics().Evictions, "one of a's blocks went, emptying its slab, which was freed");
        Assert.AreEqual(1, a.Count(x => !x.Block.IsResident));
        CollectionAssert.AreEquivalent(new[] { "a", "b", "b", "b" }, h.Pool.GetSlabs().Select(s => s.Partition).ToArray());
        Assert.AreEqual(4 * MiB, h.Pool.GetStatistics().ReservedBytes, "the cap holds");
        h.Pool.CheckInvariants();

        foreach (var (block, seed) in a.Concat(b))
        {
            Assert.IsTrue(await h.HoldsAsync(block, seed), $"{block} came back different");
            h.Pool.CheckInvariants();
        }

        Assert.IsGreaterThanOrEqualTo(1L, h.Pool.GetStatistics().Restores);
        h.Pool.Release(third, default);
    }

    [TestMethod]
    public async Task Another_partitions_empty_slab_that_an_importer_has_open_retires_and_the_allocation_waits_for_it()
    {
        await using var h = Harness(o => { o.MaxBytes = MiB; o.AllocationTimeout = TimeSpan.FromMinutes(2); });
        var block = await h.Pool.AllocateAsync(1000, In("a"));
        var d = await DescriptorAsync(block);
        h.Pool.OpenSlab(d.SlabId, d.Generation, importer: new LeaseHolder(5));
        h.Pool.Release(block, default);
        var retiring = new TaskCompletionSource<SlabRetiringEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Pool.SlabRetiring += (_, e) => retiring.TrySetResult(e);

        var allocation = h.Pool.AllocateAsync(1000, In("b")).AsTask();
        var e = await retiring.Task.WaitAsync(TimeSpan.FromMinutes(1));

        Assert.AreEqual((d.SlabId, d.Generation), (e.SlabId, e.Generation));
        CollectionAssert.AreEqual(new[] { new LeaseHolder(5) }, e.Importers.ToArray());
        Assert.IsFalse(allocation.IsCompleted, "it waits for the importer to close a's slab");
        Assert.AreEqual(SlabState.Retiring, h.Pool.GetSlabs().Single().State);

        h.Pool.CloseSlab(d.SlabId, d.Generation, importer: new LeaseHolder(5));
        var fresh = await allocation.WaitAsync(TimeSpan.FromMinutes(1));

        Assert.AreEqual("b", h.Pool.GetSlabs().Single().Partition);
        Assert.AreEqual(PoolError.Stale, Assert.ThrowsExactly<PoolException>(() => h.Pool.OpenSlab(d.SlabId, d.Generation, new LeaseHolder(5))).Error);
        Assert.AreEqual("b", fresh.Partition);
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task A_block_exempted_from_eviction_after_allocation_is_never_evicted()
    {
        var random = Seeds.Create(TestContext);
        await using var h = Harness(o => o.MaxBytes = 4 * MiB);
        var blocks = new List<(PoolBlock Block, ulong Seed)>();
        for (int i = 0; i < 4; i++)
        {
            var block = await h.Pool.AllocateAsync(MiB, In("p")); // no hint: each would be a victim
            ulong seed = (ulong)random.NextInt64();
            await h.WriteAsync(block, seed);
            blocks.Add((block, seed));
            h.Clock.Advance(TimeSpan.FromSeconds(1));
        }

        int k = random.Next(blocks.Count);
        var kept = blocks[k].Block;
        Assert.IsFalse(kept.NeverEvict);
        h.Pool.ExemptFromEviction(kept); // committed as long-lived after it was allocated
        Assert.IsTrue(kept.NeverEvict);

        for (int i = 0; i < 6; i++)
        {
            var block = await h.Pool.AllocateAsync(MiB, In("p", nextUse: random.Next(10)));
            ulong seed = (ulong)random.NextInt64();
            await h.WriteAsync(block, seed);
            blocks.Add((block, seed));
            Assert.IsTrue(kept.IsResident, $"allocation {i}: the kept block was evicted");
        }

        Assert.IsGreaterThanOrEqualTo(6L, h.Pool.GetStatistics().Evictions);
        foreach (var (block, seed) in blocks.OrderBy(_ => random.Next()))
        {
            Assert.IsTrue(await h.HoldsAsync(block, seed), $"{block} came back different");
            Assert.IsTrue(kept.IsResident, "restores never evict the kept block");
        }

        h.Pool.CheckInvariants();
        h.Pool.Release(kept, default);
        Assert.AreEqual(PoolError.Stale, Assert.ThrowsExactly<PoolException>(() => h.Pool.ExemptFromEviction(kept)).Error);
    }

    [TestMethod]
    public async Task A_block_exempted_while_evicted_comes_back_on_use_and_stays()
    {
        await using var h = Harness(o => o.MaxBytes = 2 * MiB);
        var first = await h.Pool.AllocateAsync(MiB, In("p"));
        await h.WriteAsync(first, 1);
        var second = await h.Pool.AllocateAsync(MiB, In("p", nextUse: 0));
        await h.WriteAsync(second, 2);
        var third = await h.Pool.AllocateAsync(MiB, In("p", nextUse: 0)); // evicts the first (no hint)
        Assert.IsFalse(first.IsResident);

        h.Pool.ExemptFromEviction(first);
        Assert.IsTrue(await h.HoldsAsync(first, 1), "restored on its next use");
        await h.Pool.AllocateAsync(MiB, In("p", nextUse: 0));

        Assert.IsTrue(first.IsResident, "never evict: never chosen again");
        Assert.IsTrue(await h.HoldsAsync(second, 2));
        Assert.IsTrue(first.IsResident);
        h.Pool.Release(third, default);
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task Function_statistics_of_idle_names_are_dropped_and_the_target_stays_the_same()
    {
        await using var h = Harness(o => o.StatisticsPeriod = TimeSpan.FromSeconds(60));
        var kept = await h.Pool.AllocateAsync(4096, new BlockOptions { Function = "long-running" });
        for (int i = 0; i < 5000; i++)
        {
            h.Pool.Release(await h.Pool.AllocateAsync(256, new BlockOptions { Function = "session-" + i }), default);
        }

        Assert.AreEqual(5001, h.Pool.FunctionCount);
        h.Pool.Trim();
        Assert.AreEqual(5001, h.Pool.FunctionCount, "arrivals within the window keep their statistics");

        h.Clock.Advance(TimeSpan.FromSeconds(61));
        var active = await h.Pool.AllocateAsync(MiB, new BlockOptions { Function = "active" });
        long target = h.Pool.TargetBytes;
        Assert.AreEqual(MiB, target, "the active function's reservation");
        h.Pool.Trim();

        Assert.AreEqual(2, h.Pool.FunctionCount, "only the functions with a live block or a recent arrival keep their windows");
        Assert.AreEqual(target, h.Pool.TargetBytes, "dropping idle windows does not change the target");
        h.Pool.Release(await h.Pool.AllocateAsync(256, new BlockOptions { Function = "session-7" }), default);
        Assert.AreEqual(3, h.Pool.FunctionCount, "a returning name starts a fresh window");
        h.Pool.Release(kept, default);
        h.Pool.Release(active, default);
        h.Clock.Advance(TimeSpan.FromSeconds(61));
        h.Pool.Trim();
        Assert.AreEqual(0, h.Pool.FunctionCount);
    }
}
