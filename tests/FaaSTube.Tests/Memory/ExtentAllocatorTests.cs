using FaaSTube.Memory;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Memory;

[TestClass]
public sealed class ExtentAllocatorTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void Random_allocations_and_frees_never_overlap_and_account_for_every_byte()
    {
        var random = Seeds.Create(TestContext);
        const long Capacity = 1 << 20;
        var allocator = new ExtentAllocator(Capacity);
        var live = new List<(long Offset, long Size)>();
        for (int step = 0; step < 5000; step++)
        {
            if (live.Count > 0 && random.Next(3) == 0)
            {
                int i = random.Next(live.Count);
                allocator.Free(live[i].Offset, live[i].Size);
                live.RemoveAt(i);
            }
            else
            {
                long size = ExtentAllocator.Round(random.Next(1, 64 << 10));
                long offset = allocator.TryAllocate(size);
                if (offset < 0)
                {
                    Assert.IsLessThan(size, allocator.LargestFree, $"step {step}: refused {size} bytes with a free extent of {allocator.LargestFree}");
                    continue;
                }

                Assert.AreEqual(0, offset % ExtentAllocator.Alignment);
                live.Add((offset, size));
            }

            Assert.AreEqual(Capacity, live.Sum(l => l.Size) + allocator.FreeBytes, $"step {step}: bytes lost");
            if (step % 100 == 0)
            {
                var free = allocator.FreeExtents().ToList();
                Assert.AreEqual(free.Count, allocator.FreeExtentCount);
                Assert.AreEqual(free.Count == 0 ? 0 : free.Max(e => e.Size), allocator.LargestFree, $"step {step}: largest free extent");
                for (int i = 1; i < free.Count; i++)
                {
                    Assert.IsLessThan(free[i].Offset, free[i - 1].Offset + free[i - 1].Size, $"step {step}: free neighbours left uncoalesced at {free[i].Offset}");
                }
            }
        }

        var all = live.Concat(allocator.FreeExtents()).OrderBy(r => r.Item1).ToList();
        long cursor = 0;
        foreach (var (offset, size) in all)
        {
            Assert.AreEqual(cursor, offset, "overlap or gap");
            cursor += size;
        }

        Assert.AreEqual(Capacity, cursor);
    }

    [TestMethod]
    public void Freeing_everything_coalesces_back_to_one_extent()
    {
        var allocator = new ExtentAllocator(4096);
        long a = allocator.TryAllocate(1024), b = allocator.TryAllocate(1024), c = allocator.TryAllocate(2048);
        allocator.Free(b, 1024);
        allocator.Free(a, 1024);
        Assert.AreEqual(2048, allocator.LargestFree, "a and b merge");
        allocator.Free(c, 2048);

        Assert.AreEqual(1, allocator.FreeExtentCount);
        Assert.AreEqual(4096, allocator.LargestFree);
        Assert.IsTrue(allocator.IsEmpty);
    }

    [TestMethod]
    public void A_request_that_fits_a_free_extent_exactly_is_granted()
    {
        var allocator = new ExtentAllocator(3 * 256);
        long a = allocator.TryAllocate(256);
        allocator.TryAllocate(256);
        long c = allocator.TryAllocate(256);
        allocator.Free(a, 256);
        allocator.Free(c, 256);

        Assert.AreEqual(-1, allocator.TryAllocate(512), "two separate 256-byte holes do not make 512 contiguous bytes");
        Assert.AreEqual(a, allocator.TryAllocate(256));
        Assert.AreEqual(c, allocator.TryAllocate(256));
    }
}
