using FaaSTube.Memory;
using FaaSTube.Tests.Support;
using static FaaSTube.Tests.Support.PoolHarness;

namespace FaaSTube.Tests.Memory;

/// <summary>The victim choice on its own, over blocks placed by hand in slabs of two partitions.</summary>
[TestClass]
public sealed class EvictionOrderTests
{
    [TestMethod]
    public async Task The_asker_s_own_blocks_go_first_furthest_next_use_first_never_one_in_use_moving_or_never_evict()
    {
        await using var h = new PoolHarness();
        using var rig = new Rig(h);
        var own = rig.Slab("a");
        var soon = rig.Place(own, nextUse: 1);
        var later = rig.Place(own, nextUse: 9);
        var unknown = rig.Place(own, nextUse: null);
        var other = rig.Slab("b");
        rig.Place(other, nextUse: null);

        Assert.AreSame(unknown, EvictionOrder.NextVictim(rig.Blocks, "a", ownOnly: false), "no known consumer soon: first");
        unknown.Uses = 1;
        Assert.AreSame(later, EvictionOrder.NextVictim(rig.Blocks, "a", ownOnly: false), "then the one needed furthest in the future");
        later.IsMoving = true;
        Assert.AreSame(soon, EvictionOrder.NextVictim(rig.Blocks, "a", ownOnly: false));
        soon.MarkNeverEvict();
        Assert.AreNotEqual("a", EvictionOrder.NextVictim(rig.Blocks, "a", ownOnly: false)!.Partition, "none of its own can go: another partition's");
        Assert.IsNull(EvictionOrder.NextVictim(rig.Blocks, "a", ownOnly: true), "only its own were asked for");
    }

    [TestMethod]
    public async Task Another_partition_s_victims_come_from_the_least_used_slab_whose_blocks_can_all_go()
    {
        await using var h = new PoolHarness();
        using var rig = new Rig(h);
        var full = rig.Slab("b");
        rig.Place(full, nextUse: null, bytes: 3 * 256 << 10);
        var light = rig.Slab("b");
        var lightBlock = rig.Place(light, nextUse: 5, bytes: 256 << 10);
        var stuck = rig.Slab("c");
        rig.Place(stuck, nextUse: null, bytes: 256 << 10).Uses = 1;
        rig.Place(stuck, nextUse: null, bytes: 256 << 10);

        Assert.AreSame(lightBlock, EvictionOrder.NextVictim(rig.Blocks, "a", ownOnly: false), "the slab with the fewest bytes in use that can empty");
        lightBlock.Uses = 1;
        Assert.AreEqual(3L * 256 << 10, EvictionOrder.NextVictim(rig.Blocks, "a", ownOnly: false)!.Length, "the light slab is stuck now: the full one");
    }

    /// <summary>Slabs and blocks made by hand on the harness's device.</summary>
    private sealed class Rig(PoolHarness h) : IDisposable
    {
        private readonly List<Slab> _slabs = [];
        private long _nextId;

        public List<PoolBlock> Blocks { get; } = [];

        public Slab Slab(string partition)
        {
            var slab = new Slab(_slabs.Count, 1, h.Gpus.Devices[0].Allocate(MiB), partition);
            _slabs.Add(slab);
            return slab;
        }

        public PoolBlock Place(Slab slab, double? nextUse, long bytes = 4096)
        {
            var options = new BlockOptions { Partition = slab.Partition, NextUse = nextUse };
            var block = new PoolBlock(h.Pool, ++_nextId, bytes, ExtentAllocator.Round(bytes), options, new FunctionArrivals("f"))
            {
                Slab = slab,
                Offset = slab.TryAllocate(ExtentAllocator.Round(bytes)),
            };
            Blocks.Add(block);
            return block;
        }

        public void Dispose() => _slabs.ForEach(s => s.Buffer.Dispose());
    }
}
