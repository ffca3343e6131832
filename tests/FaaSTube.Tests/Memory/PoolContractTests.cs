using FaaSTube.Devices;
using FaaSTube.Memory;
using FaaSTube.Tests.Support;
using static FaaSTube.Tests.Support.PoolHarness;

namespace FaaSTube.Tests.Memory;

/// <summary>The pool's core checks on every backend: <see cref="SimulatedPoolTests"/> in CI, <see cref="CudaPoolTests"/> (category Gpu) on CUDA.</summary>
public abstract class PoolContractTests
{
    public TestContext TestContext { get; set; } = null!;

    private protected abstract GpuBackend Backend { get; }

    private PoolHarness Harness(Action<GpuPoolOptions>? configure = null) => new(configure, backend: Backend);

    [TestMethod]
    public async Task Random_allocations_and_releases_match_a_model_and_keep_their_bytes()
    {
        var random = Seeds.Create(TestContext);
        await using var h = Harness(o => { o.MaxBytes = 6 * MiB; o.HostSpillBytes = 0; o.MaxSpillFileBytes = 0; });
        var live = new List<(PoolBlock Block, ulong Seed)>();
        int refused = 0;
        for (int step = 0; step < 400; step++)
        {
            if (live.Count > 0 && random.Next(5) < 2)
            {
                int i = random.Next(live.Count);
                var (block, seed) = live[i];
                Assert.IsTrue(await h.HoldsAsync(block, seed), $"step {step}: {block} lost its bytes");
                h.Pool.Release(block, default);
                Assert.IsTrue(block.IsFreed);
                live.RemoveAt(i);
            }
            else
            {
                long size = random.Next(1, 400 << 10);
                try
                {
                    var block = await h.Pool.AllocateAsync(size);
                    ulong seed = (ulong)random.NextInt64();
                    await h.WriteAsync(block, seed);
                    live.Add((block, seed));
                }
                catch (PoolException e) when (e.Error == PoolError.OutOfMemory)
                {
                    refused++;
                    long rounded = ExtentAllocator.Round(size);
                    Assert.IsTrue(h.Pool.GetSlabs().All(s => s.LargestFree < rounded), $"step {step}: refused {rounded} bytes that fit a slab");
                    Assert.IsGreaterThan(h.Options.MaxBytes, h.Pool.GetStatistics().ReservedBytes + h.Options.SlabBytes, "refused although the pool could grow");
                }
            }

            h.Pool.CheckInvariants();
            Assert.AreEqual(live.Sum(l => ExtentAllocator.Round(l.Block.Length)), h.Pool.GetStatistics().InUseBytes);
        }

        TestContext.WriteLine($"{refused} allocations refused at the cap");
        foreach (var (block, seed) in live)
        {
            Assert.IsTrue(await h.HoldsAsync(block, seed));
        }
    }

    [TestMethod]
    public async Task Many_threads_allocate_write_verify_and_free_without_overlap_or_loss()
    {
        var random = Seeds.Create(TestContext);
        int baseSeed = random.Next();
        await using var h = Harness(o => { o.SlabBytes = 4 * MiB; o.AllocationTimeout = TimeSpan.FromSeconds(30); });
        var device = h.Gpus.Devices[0];

        var workers = Enumerable.Range(0, 8).Select(t => Task.Run(async () =>
        {
            var rng = new Random(baseSeed + t);
            using var stream = device.CreateStream();
            var mine = new List<(PoolBlock Block, ulong Seed)>();
            for (int i = 0; i < 60; i++)
            {
                var block = await h.Pool.AllocateAsync(rng.Next(1, 96 << 10), new BlockOptions { Function = $"f{t % 3}", Holder = new LeaseHolder(t) });
                ulong seed = (ulong)rng.NextInt64();
                using (var use = await block.UseAsync())
                {
                    await stream.FillPatternAsync(use.Memory, seed);
                }

                mine.Add((block, seed));
                if (mine.Count > 4)
                {
                    var (old, oldSeed) = mine[0];
                    mine.RemoveAt(0);
                    using (var use = await old.UseAsync())
                    {
                        Assert.AreEqual(Expected(old.Length, oldSeed), await stream.ChecksumAsync(use.Memory), $"thread {t}: {old} was overwritten");
                    }

                    h.Pool.Release(old, new LeaseHolder(t));
                }
            }

            foreach (var (block, seed) in mine)
            {
                using (var use = await block.UseAsync())
                {
                    Assert.AreEqual(Expected(block.Length, seed), await stream.ChecksumAsync(use.Memory));
                }

                h.Pool.Release(block, new LeaseHolder(t));
            }
        })).ToArray();
        await Task.WhenAll(workers);

        h.Pool.CheckInvariants();
        var stats = h.Pool.GetStatistics();
        Assert.AreEqual(0L, stats.InUseBytes);
        Assert.AreEqual(0, stats.Blocks);
        Assert.AreEqual(480L, stats.Allocations);
        Assert.AreEqual(stats.ReservedBytes, stats.FreeBytes, "every byte came back");
    }

    [TestMethod]
    public async Task The_last_lease_frees_the_block_at_once_and_earlier_ones_do_not()
    {
        await using var h = Harness();
        var block = await h.Pool.AllocateAsync(1000, new BlockOptions { Holder = new LeaseHolder(1) });
        block.AddLease(new LeaseHolder(2));
        block.AddLease(new LeaseHolder(2));

        h.Pool.Release(block, new LeaseHolder(1));
        h.Pool.Release(block, new LeaseHolder(2));
        Assert.IsFalse(block.IsFreed);
        Assert.AreEqual(1, block.LeaseCount);
        Assert.AreEqual(1024L, h.Pool.GetStatistics().InUseBytes);

        h.Pool.Release(block, new LeaseHolder(2));
        Assert.IsTrue(block.IsFreed);
        Assert.AreEqual(0L, h.Pool.GetStatistics().InUseBytes);
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task A_block_in_use_is_freed_when_the_use_ends_after_the_last_lease()
    {
        await using var h = Harness();
        var block = await h.Pool.AllocateAsync(1000);
        var use = await block.UseAsync();
        h.Pool.Release(block, default);
        Assert.IsFalse(block.IsFreed, "freed under an open use");

        use.Dispose();
        use.Dispose();

        Assert.IsTrue(block.IsFreed);
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task Releasing_a_holder_drops_all_its_leases_and_only_its_own()
    {
        await using var h = Harness();
        var a = await h.Pool.AllocateAsync(100, new BlockOptions { Holder = new LeaseHolder(7) });
        var b = await h.Pool.AllocateAsync(100, new BlockOptions { Holder = new LeaseHolder(7) });
        b.AddLease(new LeaseHolder(8));
        b.AddLease(new LeaseHolder(7));

        Assert.AreEqual(3, h.Pool.ReleaseHolder(new LeaseHolder(7)));

        Assert.IsTrue(a.IsFreed);
        Assert.IsFalse(b.IsFreed);
        Assert.AreEqual(1, b.LeaseCount);
        Assert.AreEqual(0, h.Pool.ReleaseHolder(new LeaseHolder(7)));
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task Bad_input_gets_a_specific_error_and_leaves_the_pool_unchanged()
    {
        await using var h = Harness(o => o.MaxBytes = 4 * MiB);
        await using var other = Harness();
        var block = await h.Pool.AllocateAsync(5000, new BlockOptions { Holder = new LeaseHolder(1) });
        var foreign = await other.Pool.AllocateAsync(10);
        var descriptor = await DescriptorAsync(block);

        var before = h.Pool.GetStatistics();

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await h.Pool.AllocateAsync(0));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await h.Pool.AllocateAsync(-5));
        Assert.AreEqual(PoolError.TooLarge, (await Assert.ThrowsAsync<PoolException>(async () => await h.Pool.AllocateAsync(4 * MiB + 1))).Error, "larger than the cap");
        Assert.AreEqual(PoolError.LeaseNotHeld, Assert.ThrowsExactly<PoolException>(() => h.Pool.Release(block, new LeaseHolder(2))).Error);
        Assert.AreEqual(PoolError.Foreign, Assert.ThrowsExactly<PoolException>(() => h.Pool.Release(foreign, default)).Error);
        Assert.AreEqual(PoolError.Foreign, Assert.ThrowsExactly<PoolException>(() => h.Pool.Resolve(descriptor with { PoolId = Guid.NewGuid() })).Error);
        Assert.AreEqual(PoolError.Stale, Assert.ThrowsExactly<PoolException>(() => h.Pool.Resolve(descriptor with { Generation = descriptor.Generation + 1 })).Error);
        Assert.AreEqual(PoolError.Stale, Assert.ThrowsExactly<PoolException>(() => h.Pool.Resolve(descriptor with { BlockId = 999 })).Error);
        Assert.AreEqual(PoolError.OutOfBounds, Assert.ThrowsExactly<PoolException>(() => h.Pool.Resolve(descriptor with { Length = 5001 })).Error);
        Assert.AreEqual(PoolError.OutOfBounds, Assert.ThrowsExactly<PoolException>(() => h.Pool.Resolve(descriptor with { Offset = descriptor.Offset + 256 })).Error);
        Assert.AreSame(block, h.Pool.Resolve(descriptor));

        h.Pool.CheckInvariants();
        var after = h.Pool.GetStatistics();
        Assert.AreEqual(before with { TargetBytes = 0 }, after with { TargetBytes = 0 });

        h.Pool.Release(block, new LeaseHolder(1));
        Assert.AreEqual(PoolError.Stale, Assert.ThrowsExactly<PoolException>(() => h.Pool.Release(block, new LeaseHolder(1))).Error, "freeing twice");
        Assert.AreEqual(PoolError.Stale, (await Assert.ThrowsAsync<PoolException>(async () => await block.UseAsync())).Error);
        Assert.AreEqual(PoolError.Stale, Assert.ThrowsExactly<PoolException>(() => block.AddLease(new LeaseHolder(3))).Error);
        Assert.AreEqual(PoolError.Stale, Assert.ThrowsExactly<PoolException>(() => h.Pool.Resolve(descriptor)).Error);
        h.Pool.CheckInvariants();

        await h.Pool.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await h.Pool.AllocateAsync(10));
    }

    [TestMethod]
    public async Task Evicted_blocks_come_back_byte_identical()
    {
        var random = Seeds.Create(TestContext);
        await using var h = Harness(o => o.MaxBytes = 2 * MiB);
        var seeds = new[] { (ulong)random.NextInt64(), (ulong)random.NextInt64(), (ulong)random.NextInt64() };
        var blocks = new List<PoolBlock>();
        foreach (var seed in seeds)
        {
            var block = await h.Pool.AllocateAsync(MiB - random.Next(1000));
            await h.WriteAsync(block, seed);
            blocks.Add(block);
        }

        Assert.AreEqual(1L, h.Pool.GetStatistics().Evictions);
        for (int i = 0; i < 3; i++)
        {
            Assert.IsTrue(await h.HoldsAsync(blocks[i], seeds[i]), $"block {i}");
        }

        h.Pool.CheckInvariants();
    }
}
