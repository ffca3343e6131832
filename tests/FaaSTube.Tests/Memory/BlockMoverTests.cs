using FaaSTube.Devices;
using FaaSTube.Kernels;
using FaaSTube.Memory;
using FaaSTube.Tests.Support;
using static FaaSTube.Tests.Support.PoolHarness;

namespace FaaSTube.Tests.Memory;

/// <summary>
/// The move routine on its own (no pool decisions around it): a block goes device -> host and
/// host -> device through the same <see cref="BlockMover.RunAsync"/>, lands at the target with its
/// bytes intact (checksums on the GPU), and gives back the source; a failed copy gives back the
/// target and leaves the block where it was.
/// </summary>
[TestClass]
public sealed class BlockMoverTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [DataRow(false, DisplayName = "host spill")]
    [DataRow(true, DisplayName = "file spill")]
    public async Task A_block_moves_to_the_spill_store_and_back_through_one_routine_with_its_bytes(bool toFile)
    {
        var random = Seeds.Create(TestContext);
        await using var h = new PoolHarness(o => o.HostSpillBytes = toFile ? 0 : 4 * MiB);
        using var rig = new MoverRig(h);
        long length = random.Next(1, (int)MiB);
        ulong seed = (ulong)random.NextInt64();
        var block = rig.Place(length, rig.SlabA);
        await h.Stream.FillPatternAsync(block.Slab!.Buffer.Slice(block.Offset, length), seed);

        Assert.IsTrue(rig.Mover.TryBeginEviction(block, out var eviction));
        Assert.IsNotNull(eviction);
        Assert.AreEqual(MoveDirection.ToHost, eviction.Direction);
        Assert.IsTrue(block.IsMoving);
        Assert.AreEqual(1, rig.Mover.InFlight);
        Assert.IsTrue(await rig.Mover.RunAsync(eviction, TestContext.CancellationToken));

        Assert.IsFalse(block.IsMoving);
        Assert.IsNull(block.Slab, "evicted: no device range");
        Assert.IsNotNull(block.Spill);
        Assert.AreEqual(toFile, block.Spill.IsFile);
        Assert.AreEqual(MiB, rig.SlabA.FreeBytes, "the source range went back to its slab");
        Assert.AreEqual(length, toFile ? rig.Spill.FileBytes : rig.Spill.HostBytes);
        Assert.AreEqual((1L, length, 0L, 0L), (rig.Counters.Evictions, rig.Counters.EvictedBytes, rig.Counters.Restores, rig.Counters.RestoredBytes));

        long offset = rig.SlabB.TryAllocate(block.Rounded);
        var restore = rig.Mover.TryBeginRestore(block, rig.SlabB, offset);
        Assert.IsNotNull(restore);
        Assert.AreEqual(MoveDirection.ToDevice, restore.Direction);
        Assert.IsTrue(await rig.Mover.RunAsync(restore, TestContext.CancellationToken));

        Assert.AreSame(rig.SlabB, block.Slab, "restored into the range it was given");
        Assert.AreEqual(offset, block.Offset);
        Assert.IsNull(block.Spill);
        Assert.AreEqual(0L, rig.Spill.HostBytes + rig.Spill.FileBytes, "the spill entry went back");
        Assert.AreEqual(Expected(length, seed), await h.Stream.ChecksumAsync(rig.SlabB.Buffer.Slice(offset, length)), "the bytes came back unchanged");
        Assert.AreEqual((1L, length, 1L, length), (rig.Counters.Evictions, rig.Counters.EvictedBytes, rig.Counters.Restores, rig.Counters.RestoredBytes));
        Assert.AreEqual(0, rig.Mover.InFlight);
        Assert.AreEqual(2, rig.Ended, "each move ends once");
    }

    [TestMethod]
    public async Task A_failed_copy_gives_the_target_back_and_leaves_the_block_where_it_was()
    {
        await using var h = new PoolHarness();
        using var rig = new MoverRig(h);
        var block = rig.Place(5000, rig.SlabA);
        long offsetA = block.Offset;
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        Assert.IsTrue(rig.Mover.TryBeginEviction(block, out var eviction));
        await Assert.ThrowsAsync<OperationCanceledException>(() => rig.Mover.RunAsync(eviction!, cancelled.Token));
        Assert.AreSame(rig.SlabA, block.Slab, "still on the device");
        Assert.AreEqual(offsetA, block.Offset);
        Assert.IsNull(block.Spill);
        Assert.IsFalse(block.IsMoving);
        Assert.AreEqual(0L, rig.Spill.HostBytes, "the reserved entry went back");
        Assert.AreEqual(0L, rig.Counters.Evictions);

        Assert.IsTrue(rig.Mover.TryBeginEviction(block, out eviction));
        Assert.IsTrue(await rig.Mover.RunAsync(eviction!, TestContext.CancellationToken));
        long offsetB = rig.SlabB.TryAllocate(block.Rounded);
        var restore = rig.Mover.TryBeginRestore(block, rig.SlabB, offsetB)!;
        await Assert.ThrowsAsync<OperationCanceledException>(() => rig.Mover.RunAsync(restore, cancelled.Token));
        Assert.IsNull(block.Slab, "still evicted");
        Assert.IsNotNull(block.Spill);
        Assert.AreEqual(MiB, rig.SlabB.FreeBytes, "the target range went back");
        Assert.AreEqual(0L, rig.Counters.Restores);
        Assert.AreEqual(0, rig.Mover.InFlight);
    }

    [TestMethod]
    public async Task A_block_in_use_or_never_evict_does_not_start_moving_and_a_stopped_mover_starts_nothing()
    {
        await using var h = new PoolHarness();
        using var rig = new MoverRig(h);
        var used = rig.Place(1000, rig.SlabA);
        used.Uses = 1;
        Assert.IsTrue(rig.Mover.TryBeginEviction(used, out var move), "the block changed: pick again");
        Assert.IsNull(move);
        var kept = rig.Place(1000, rig.SlabA, new BlockOptions { NeverEvict = true });
        Assert.IsTrue(rig.Mover.TryBeginEviction(kept, out move));
        Assert.IsNull(move);
        Assert.AreEqual(0L, rig.Spill.HostBytes, "no spill entry stays reserved");

        var free = rig.Place(1000, rig.SlabA);
        Assert.IsTrue(rig.Mover.TryBeginEviction(free, out move));
        Assert.IsTrue(await rig.Mover.RunAsync(move!, TestContext.CancellationToken));
        rig.Mover.Stop(TimeSpan.Zero);
        Assert.IsFalse(rig.Mover.TryBeginEviction(used, out _), "stopped");
        long offset = rig.SlabB.TryAllocate(free.Rounded);
        Assert.IsNull(rig.Mover.TryBeginRestore(free, rig.SlabB, offset), "stopped");
    }

    /// <summary>Two 1 MiB slabs, a spill store and a mover, on the harness's device; blocks placed by hand.</summary>
    /// <summary>
    /// A copy takes the least-loaded lane: while one tenant's large move holds a lane, the next moves
    /// start on the free ones, and a lane is shared only when all are busy; each lease's bytes leave
    /// its lane when it is disposed.
    /// </summary>
    [TestMethod]
    public async Task A_large_move_holds_one_lane_and_the_next_moves_take_free_lanes()
    {
        await using var h = new PoolHarness();
        using var lanes = new MoveLanes(h.Gpus.Devices[0]);
        var large = lanes.Take(4L << 30);
        var others = Enumerable.Range(0, MoveLanes.Count - 1).Select(_ => lanes.Take(MiB)).ToList();
        CollectionAssert.AllItemsAreUnique(others.Select(l => l.Lane).Append(large.Lane).ToList(), "every copy on a lane of its own while lanes are free");

        var shared = lanes.Take(MiB);
        Assert.AreNotEqual(large.Lane, shared.Lane, "when all are busy, the least-loaded is shared, never the one under the large move");
        Assert.AreEqual(2 * MiB, lanes.QueuedBytes(shared.Lane));
        Assert.AreNotSame(lanes.Take(0).Stream, large.Stream, "lanes are different streams");

        large.Dispose();
        Assert.AreEqual(0L, lanes.QueuedBytes(large.Lane), "the large move's bytes left its lane");
        var next = lanes.Take(MiB);
        Assert.AreEqual(large.Lane, next.Lane, "and the freed lane is the next one taken");
        foreach (var lease in others.Append(shared).Append(next))
        {
            lease.Dispose();
        }

        Assert.IsTrue(Enumerable.Range(0, MoveLanes.Count).All(i => lanes.QueuedBytes(i) == 0), "nothing counted after every lease ended");
    }

    private sealed class MoverRig : IDisposable
    {
        private readonly PoolHarness _h;
        private long _nextId;

        public MoverRig(PoolHarness h)
        {
            _h = h;
            var device = h.Gpus.Devices[0];
            SlabA = new Slab(0, 1, device.Allocate(MiB), "");
            SlabB = new Slab(1, 1, device.Allocate(MiB), "");
            Spill = new SpillStore(device, h.Options);
            Counters = new PoolCounters(PoolMetrics.For(null), new(FaaSTube.Diagnostics.TelemetryTags.GpuIndex, device.Ordinal));
            Mover = new BlockMover(device, Spill, Counters, () => TimeSpan.Zero, () => Ended++, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        }

        public Slab SlabA { get; }

        public Slab SlabB { get; }

        public SpillStore Spill { get; }

        public PoolCounters Counters { get; }

        public BlockMover Mover { get; }

        public int Ended { get; private set; }

        public PoolBlock Place(long length, Slab slab, BlockOptions? options = null)
        {
            long rounded = ExtentAllocator.Round(length);
            var block = new PoolBlock(_h.Pool, Interlocked.Increment(ref _nextId), length, rounded, options ?? new BlockOptions(), new FunctionArrivals("f"))
            {
                Slab = slab,
                Offset = slab.TryAllocate(rounded),
            };
            Assert.IsGreaterThanOrEqualTo(0L, block.Offset);
            return block;
        }

        public void Dispose()
        {
            Mover.Dispose();
            Spill.Dispose();
            SlabA.Buffer.Dispose();
            SlabB.Buffer.Dispose();
        }
    }
}
