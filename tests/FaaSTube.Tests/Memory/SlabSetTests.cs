using FaaSTube.Devices;
using FaaSTube.Memory;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Memory;

/// <summary>
/// The slab set on its own: random sequences of growing, placing, freeing, opening, closing and
/// retiring, checked after every step against a model that only remembers what it was told (which
/// slabs exist and in what state, which ranges it placed): reserved and in-use bytes, the slab
/// count, each slab's layout, the cap, and stale generations.
/// </summary>
[TestClass]
public sealed class SlabSetTests
{
    private const long MiB = 1 << 20;

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void Random_grow_place_free_and_retire_sequences_match_a_model()
    {
        var random = Seeds.Create(TestContext);
        using var gpus = Gpus.Open(GpuBackend.Simulated, simulatedMemory: 256 * MiB);
        var options = new GpuPoolOptions { SlabBytes = MiB, MaxBytes = 8 * MiB, MaxFreeMemoryFraction = 1 };
        var now = TimeSpan.Zero;
        var set = new SlabSet(gpus.Devices[0], options, () => now, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        var model = new Model();
        set.SlabFreed += (id, generation) => model.Freed(id, generation);
        string[] partitions = ["", "a", "b"];
        var importers = new[] { new LeaseHolder(1), new LeaseHolder(2) };

        for (int step = 0; step < 4000; step++)
        {
            now += TimeSpan.FromMilliseconds(1);
            string partition = partitions[random.Next(partitions.Length)];
            var retiring = new List<SlabRetiringEventArgs>();
            switch (random.Next(10))
            {
                case 0:
                {
                    long rounded = ExtentAllocator.Round(random.NextInt64(1, 3 * MiB));
                    var (growth, toClear) = set.TryGrow(rounded, partition, retiring);
                    Assert.IsNull(toClear, "the simulated GPU zeroes fresh memory: nothing to clear");
                    if (growth == SlabGrowth.Grown)
                    {
                        var added = set.All.OfType<Slab>().Single(s => !model.Slabs.ContainsKey((s.Id, s.Generation)));
                        Assert.AreEqual(partition, added.Partition, $"step {step}");
                        Assert.AreEqual(Math.Max(MiB, (rounded + MiB - 1) & ~(MiB - 1)), added.Capacity, $"step {step}: slab size");
                        Assert.IsFalse(model.Generations.TryGetValue(added.Id, out int last) && added.Generation <= last, $"step {step}: a reused slot takes a new generation");
                        model.Added(added);
                    }

                    break;
                }

                case 1 or 2 or 3:
                {
                    long rounded = ExtentAllocator.Round(random.NextInt64(1, MiB / 2));
                    if (set.TryPlace(rounded, partition, out var slab, out long offset))
                    {
                        Assert.AreEqual(partition, slab.Partition, $"step {step}: placed in another partition's slab");
                        Assert.AreEqual(SlabState.Active, model.Slabs[(slab.Id, slab.Generation)].State, $"step {step}");
                        model.Slabs[(slab.Id, slab.Generation)].Blocks.Add((offset, rounded));
                    }
                    else
                    {
                        foreach (var s in set.All.OfType<Slab>().Where(s => s.Partition == partition && s.State == SlabState.Active))
                        {
                            Assert.IsTrue(s.FreeSpace().Largest < rounded, $"step {step}: refused {rounded} bytes that fit slab {s.Id}");
                        }
                    }

                    break;
                }

                case 4 or 5 or 6:
                {
                    var held = model.Slabs.Where(e => e.Value.Blocks.Count > 0).ToList();
                    if (held.Count > 0)
                    {
                        var (key, entry) = held[random.Next(held.Count)];
                        var block = entry.Blocks[random.Next(entry.Blocks.Count)];
                        entry.Blocks.Remove(block);
                        set.Find(key.Id, key.Generation).Free(block.Offset, block.Size, now);
                    }

                    break;
                }

                case 7:
                {
                    var active = model.Slabs.Where(e => e.Value.State == SlabState.Active).ToList();
                    if (active.Count > 0)
                    {
                        var key = active[random.Next(active.Count)].Key;
                        var importer = importers[random.Next(importers.Length)];
                        set.Find(key.Id, key.Generation).Open(importer);
                        model.Slabs[key].Importers.Add(importer);
                    }

                    break;
                }

                case 8:
                {
                    var open = model.Slabs.Where(e => e.Value.Importers.Count > 0).ToList();
                    if (open.Count > 0)
                    {
                        var (key, entry) = open[random.Next(open.Count)];
                        var importer = entry.Importers.ElementAt(random.Next(entry.Importers.Count));
                        entry.Importers.Remove(importer);
                        var slab = set.Find(key.Id, key.Generation);
                        bool last = slab.Close(importer);
                        Assert.AreEqual(entry.State == SlabState.Retiring && entry.Importers.Count == 0, last, $"step {step}: last importer of a retiring slab");
                        if (last)
                        {
                            set.FreeRetired(slab);
                            Assert.IsFalse(model.Slabs.ContainsKey(key), $"step {step}: a retiring slab whose last importer closed it was freed");
                        }
                    }

                    break;
                }

                default:
                {
                    long target = random.Next(3) * MiB;
                    long activeBefore = model.Slabs.Values.Where(e => e.State == SlabState.Active).Sum(e => e.Capacity);
                    set.Trim(target, TimeSpan.Zero, retiring);
                    long activeAfter = model.Slabs.Values.Where(e => e.State == SlabState.Active && !retiring.Any(r => (r.SlabId, r.Generation) == e.Key)).Sum(e => e.Capacity);
                    Assert.IsTrue(activeAfter >= Math.Min(target, activeBefore), $"step {step}: trimmed below the target");
                    break;
                }
            }

            foreach (var r in retiring)
            {
                var entry = model.Slabs[(r.SlabId, r.Generation)];
                Assert.AreEqual(0, entry.Blocks.Count, $"step {step}: a slab with blocks retired");
                CollectionAssert.AreEquivalent(entry.Importers.ToArray(), r.Importers.ToArray(), $"step {step}: importers told");
                entry.State = SlabState.Retiring;
            }

            model.Check(set, options, step);
        }

        TestContext.WriteLine($"slabs at the end: {model.Slabs.Count}, freed along the way: {model.FreedCount}");
        Assert.IsTrue(model.FreedCount > 0, "the sequence retired and freed slabs");
    }

    private sealed class Model
    {
        public Dictionary<(int Id, int Generation), Entry> Slabs { get; } = [];

        public Dictionary<int, int> Generations { get; } = [];

        public int FreedCount { get; private set; }

        public void Added(Slab slab)
        {
            Slabs.Add((slab.Id, slab.Generation), new Entry((slab.Id, slab.Generation), slab.Capacity));
            Generations[slab.Id] = slab.Generation;
        }

        public void Freed(int id, int generation)
        {
            var key = (id, generation);
            Assert.IsTrue(Slabs.TryGetValue(key, out var entry), $"freed slab {key} the model does not hold");
            Assert.AreEqual(0, entry.Blocks.Count, $"slab {key} was freed with blocks in it");
            Assert.AreEqual(0, entry.Importers.Count, $"slab {key} was freed while open");
            Slabs.Remove(key);
            FreedCount++;
        }

        public void Check(SlabSet set, GpuPoolOptions options, int step)
        {
            var usage = set.Usage();
            long reserved = Slabs.Values.Sum(e => e.Capacity);
            long inUse = Slabs.Values.Sum(e => e.Blocks.Sum(b => b.Size));
            Assert.AreEqual(reserved, usage.Reserved, $"step {step}: reserved");
            Assert.AreEqual(reserved, set.ReservedBytes, $"step {step}: reserved");
            Assert.AreEqual(inUse, usage.InUse, $"step {step}: in use");
            Assert.AreEqual(Slabs.Count, usage.Slabs, $"step {step}: slabs");
            Assert.IsTrue(usage.Reserved <= options.MaxBytes, $"step {step}: over the cap");
            foreach (var slab in set.All.OfType<Slab>())
            {
                Assert.IsTrue(Slabs.TryGetValue((slab.Id, slab.Generation), out var entry), $"step {step}: slab {slab.Id} the model does not hold");
                Assert.AreEqual(entry.State, slab.State, $"step {step}: slab {slab.Id}");
                var (free, extents) = slab.FreeRanges();
                var ranges = extents.Select(e => (e.Offset, e.Size, What: "free")).Concat(entry.Blocks.Select(b => (b.Offset, b.Size, What: "block"))).ToList();
                SlabLayout.Check(slab, free, extents, ranges);
            }

            foreach (var (key, entry) in Slabs)
            {
                _ = set.Find(key.Id, key.Generation); // held
                Assert.AreEqual(PoolError.Stale, Assert.ThrowsExactly<PoolException>(() => set.Find(key.Id, key.Generation - 1)).Error, $"step {step}: an old generation");
            }
        }
    }

    private sealed class Entry((int Id, int Generation) key, long capacity)
    {
        public (int Id, int Generation) Key { get; } = key;

        public long Capacity { get; } = capacity;

        public SlabState State { get; set; } = SlabState.Active;

        public List<(long Offset, long Size)> Blocks { get; } = [];

        public HashSet<LeaseHolder> Importers { get; } = [];
    }
}
