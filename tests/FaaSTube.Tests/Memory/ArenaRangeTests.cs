using FaaSTube.Memory;
using FaaSTube.Tests.Support;
using static FaaSTube.Tests.Support.PoolHarness;

namespace FaaSTube.Tests.Memory;

/// <summary>
/// Arena ranges in the pool (src/FaaSTube/Memory/CarvedRange.cs, GpuMemoryPool.Arena.cs): a range is
/// one block charged whole; pieces are blocks carved inside it against the pool's own map; a returned
/// range gives back exactly what no live piece holds, and pieces that outlive it give back their own.
/// </summary>
[TestClass]
public sealed class ArenaRangeTests
{
    private static readonly LeaseHolder Client = new(7);

    public TestContext TestContext { get; set; } = null!;

    private static BlockOptions Options(string partition = "wf") => new() { Function = "f", Holder = Client, Partition = partition };

    [TestMethod]
    public async Task Pieces_lie_inside_their_range_and_a_returned_range_gives_back_only_what_no_piece_holds()
    {
        await using var h = new PoolHarness(o => o.SlabBytes = 4 * MiB);
        var range = await h.Pool.LeaseRangeAsync(2 * MiB, Options(), default);
        var stats = h.Pool.GetStatistics();
        Assert.AreEqual(2 * MiB, stats.InUseBytes, "the range is in use whole");
        Assert.AreEqual(2 * MiB, stats.ArenaLeasedBytes);
        Assert.AreEqual(2 * MiB, stats.ArenaUnusedBytes);

        var a = h.Pool.Carve(range, 0, MiB / 2 + 3, Options());
        var b = h.Pool.Carve(range, MiB, MiB / 4, Options());
        await h.WriteAsync(a, 11);
        await h.WriteAsync(b, 12);
        stats = h.Pool.GetStatistics();
        Assert.AreEqual(2 * MiB, stats.InUseBytes, "pieces add nothing: their bytes are the range's");
        Assert.AreEqual(2 * MiB - (MiB / 2 + 256) - MiB / 4, stats.ArenaUnusedBytes, "leased but unused: what no piece holds");
        h.Pool.CheckInvariants();

        h.Pool.Release(range, Client); // the client returns it
        stats = h.Pool.GetStatistics();
        Assert.AreEqual(MiB / 2 + 256 + MiB / 4, stats.InUseBytes, "only the live pieces stay in use");
        Assert.AreEqual(0L, stats.ArenaLeasedBytes);
        Assert.AreEqual(0L, stats.ArenaUnusedBytes);
        h.Pool.CheckInvariants();
        Assert.IsTrue(await h.HoldsAsync(a, 11), "a piece keeps its bytes after its range is returned");
        Assert.IsTrue(await h.HoldsAsync(b, 12));

        h.Pool.Release(a, Client);
        h.Pool.Release(b, Client);
        Assert.AreEqual(0L, h.Pool.GetStatistics().InUseBytes, "pieces that outlive the range give their bytes to the slab");
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task A_carve_out_of_the_range_unaligned_or_overlapping_a_live_piece_is_refused_and_takes_nothing()
    {
        await using var h = new PoolHarness(o => o.SlabBytes = 4 * MiB);
        var range = await h.Pool.LeaseRangeAsync(MiB, Options(), default);
        var piece = h.Pool.Carve(range, 4096, 8192, Options());
        int blocks = h.Pool.GetStatistics().Blocks;

        (long Offset, long Length, PoolError Error, string What)[] refused =
        [
            (MiB - 256, 512, PoolError.OutOfBounds, "past the end"),
            (-256, 512, PoolError.OutOfBounds, "before the start"),
            (long.MaxValue - 255, 512, PoolError.OutOfBounds, "an offset that would wrap"),
            (100, 512, PoolError.OutOfBounds, "unaligned"),
            (0, 2 * MiB, PoolError.OutOfBounds, "larger than the range"),
            (0, 0, PoolError.OutOfBounds, "empty"),
            (0, 4096 + 1, PoolError.OutOfBounds, "its tail overlaps the live piece"),
            (8192, 256, PoolError.OutOfBounds, "inside the live piece"),
            (12288 - 256, 4096, PoolError.OutOfBounds, "its head overlaps the live piece's tail"),
        ];
        foreach (var (offset, length, error, what) in refused)
        {
            var e = Assert.ThrowsExactly<PoolException>(() => h.Pool.Carve(range, offset, length, Options()), what);
            Assert.AreEqual(error, e.Error, what);
        }

        Assert.AreEqual(PoolError.Foreign, Assert.ThrowsExactly<PoolException>(() => h.Pool.Carve(range, 0, 256, Options("other"))).Error, "another partition");
        Assert.AreEqual(PoolError.Foreign, Assert.ThrowsExactly<PoolException>(() => h.Pool.Carve(piece, 0, 256, Options())).Error, "a piece is no range");
        Assert.AreEqual(blocks, h.Pool.GetStatistics().Blocks, "nothing refused was taken");

        h.Pool.Carve(range, 0, 4096, Options()); // right up to the live piece: fits exactly
        h.Pool.Carve(range, 12288, 256, Options());
        h.Pool.Release(piece, Client);
        h.Pool.Carve(range, 4096, 8192, Options()); // a freed piece's space is the range's again
        h.Pool.CheckInvariants();

        h.Pool.Release(range, Client);
        Assert.AreEqual(PoolError.Stale, Assert.ThrowsExactly<PoolException>(() => h.Pool.Carve(range, 65536, 256, Options())).Error, "a returned range carves nothing");
    }

    [TestMethod]
    public async Task Random_carves_and_frees_keep_the_books_balanced_and_the_bytes_intact()
    {
        var random = Seeds.Create(TestContext);
        await using var h = new PoolHarness(o => o.SlabBytes = 8 * MiB);
        var range = await h.Pool.LeaseRangeAsync(4 * MiB, Options(), default);
        var live = new List<(PoolBlock Block, ulong Seed)>();
        for (int step = 0; step < 300; step++)
        {
            if (live.Count > 0 && random.Next(3) == 0)
            {
                int i = random.Next(live.Count);
                Assert.IsTrue(await h.HoldsAsync(live[i].Block, live[i].Seed), $"step {step}: a live piece kept its bytes");
                h.Pool.Release(live[i].Block, Client);
                live.RemoveAt(i);
                continue;
            }

            long offset = random.Next(0, 4 * 1024) * 256L;
            long length = random.Next(1, 64 * 1024);
            try
            {
                var piece = h.Pool.Carve(range, offset, length, Options());
                ulong seed = (ulong)random.NextInt64();
                await h.WriteAsync(piece, seed);
                live.Add((piece, seed));
            }
            catch (PoolException e) when (e.Error == PoolError.OutOfBounds)
            {
                // refused: it overlapped a live piece or ran past the end; the map says which, checked below
            }

            h.Pool.CheckInvariants();
        }

        long carved = live.Sum(p => ((p.Block.Length + 255) / 256) * 256);
        Assert.AreEqual(4 * MiB - carved, h.Pool.GetStatistics().ArenaUnusedBytes);
        h.Pool.Release(range, Client);
        h.Pool.CheckInvariants();
        Assert.AreEqual(carved, h.Pool.GetStatistics().InUseBytes, "the returned range keeps exactly its live pieces");
        foreach (var (block, seed) in live)
        {
            Assert.IsTrue(await h.HoldsAsync(block, seed));
            h.Pool.Release(block, Client);
        }

        Assert.AreEqual(0L, h.Pool.GetStatistics().InUseBytes);
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task The_quota_counts_a_leased_range_whole_and_then_only_the_pieces_that_outlive_it()
    {
        await using var h = new PoolHarness(o => { o.SlabBytes = 4 * MiB; o.MaxPartitionBytes = 3 * MiB; });
        var range = await h.Pool.LeaseRangeAsync(2 * MiB, Options(), default);
        var piece = h.Pool.Carve(range, 0, MiB / 2, Options());
        var refused = await Assert.ThrowsExactlyAsync<PoolException>(async () => await h.Pool.AllocateAsync(2 * MiB, Options()));
        Assert.AreEqual(PoolError.QuotaExceeded, refused.Error, "the whole range counts against the quota while leased");

        h.Pool.Release(range, Client);
        var fits = await h.Pool.AllocateAsync(2 * MiB, Options()); // 0.5 MiB piece + 2 MiB <= 3 MiB
        Assert.AreEqual(PoolError.QuotaExceeded, (await Assert.ThrowsExactlyAsync<PoolException>(async () => await h.Pool.AllocateAsync(MiB, Options()))).Error, "the piece that outlived its range still counts");
        h.Pool.Release(piece, Client);
        var more = await h.Pool.AllocateAsync(MiB, Options());
        h.Pool.Release(fits, Client);
        h.Pool.Release(more, Client);
        Assert.AreEqual(0L, h.Pool.GetStatistics().InUseBytes);
    }

    [TestMethod]
    public async Task Pieces_of_a_leased_range_are_never_evicted_and_after_its_return_they_evict_and_restore_like_any_block()
    {
        await using var h = new PoolHarness(o => { o.SlabBytes = 2 * MiB; o.MaxBytes = 4 * MiB; });
        var range = await h.Pool.LeaseRangeAsync(2 * MiB, Options(), default);
        var piece = h.Pool.Carve(range, 0, MiB, Options());
        await h.WriteAsync(piece, 5);
        var other = await h.Pool.AllocateAsync(2 * MiB, new BlockOptions { Function = "g", NextUse = 9 });
        var second = await h.Pool.AllocateAsync(2 * MiB, new BlockOptions { Function = "g", NextUse = 0 }); // the pool is full: something must go
        Assert.IsTrue(piece.IsResident, "a piece of a leased range is no victim");
        Assert.IsFalse(other.IsResident, "the ordinary block was evicted instead");
        Assert.IsTrue(range.IsResident);

        h.Pool.Release(range, Client); // 1 MiB of the range goes back; the piece is a block of its own now
        h.Pool.CheckInvariants();
        PoolBlock third;
        using (await second.UseAsync()) // in use: not a victim, so only the piece can make room
        {
            third = await h.Pool.AllocateAsync(2 * MiB, new BlockOptions { Function = "g", NextUse = 0 });
        }

        Assert.IsFalse(piece.IsResident, "with its range returned, the piece is evicted like any block");
        h.Pool.CheckInvariants();
        h.Pool.Release(third, default);
        Assert.IsTrue(await h.HoldsAsync(piece, 5), "and comes back byte-identical");
        h.Pool.CheckInvariants();
        h.Pool.Release(piece, Client);
        h.Pool.Release(second, default);
        h.Pool.Release(other, default);
        var stats = h.Pool.GetStatistics();
        Assert.AreEqual(0L, stats.InUseBytes);
        Assert.AreEqual(0L, stats.SpillHostBytes + stats.SpillFileBytes);
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task The_elastic_target_counts_the_unused_part_of_leased_ranges()
    {
        await using var h = new PoolHarness(o => o.SlabBytes = 4 * MiB);
        long before = h.Pool.TargetBytes;
        var range = await h.Pool.LeaseRangeAsync(2 * MiB, Options(), default);
        Assert.AreEqual(before + 2 * MiB, h.Pool.TargetBytes, "a range is memory held ready: the pool may not trim below it");
        var piece = h.Pool.Carve(range, 0, MiB, Options());
        long withPiece = h.Pool.TargetBytes;
        Assert.IsGreaterThanOrEqualTo(before + MiB, withPiece, "the unused MiB stays in the target, the piece counts as its function's allocation");
        h.Pool.Release(range, Client);
        Assert.AreEqual(withPiece - MiB, h.Pool.TargetBytes, "a returned range adds nothing");
        h.Pool.Release(piece, Client);
    }
}
