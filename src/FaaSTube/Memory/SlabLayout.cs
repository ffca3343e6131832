namespace FaaSTube.Memory;

/// <summary>The layout check of one slab, for tests: its blocks and free extents tile it exactly.</summary>
internal static class SlabLayout
{
    /// <summary>
    /// Throws unless <paramref name="ranges"/> (the slab's blocks and its free extents, in any order)
    /// cover the slab from 0 to its capacity without gap or overlap, each aligned and non-empty, with
    /// no two free extents adjacent (they are merged on free), and the free extents sum to
    /// <paramref name="free"/>, what the slab's allocator says is free.
    /// </summary>
    public static void Check(Slab slab, long free, IReadOnlyList<(long Offset, long Size)> extents, List<(long Offset, long Size, string What)> ranges)
    {
        ranges.Sort((a, b) => a.Offset.CompareTo(b.Offset));
        long cursor = 0;
        foreach (var (offset, size, what) in ranges)
        {
            if (offset != cursor || offset % ExtentAllocator.Alignment != 0 || size <= 0)
            {
                throw new InvalidOperationException($"Slab {slab.Id}: {what} at [{offset}, +{size}) does not start at {cursor} (overlap, gap or misalignment).");
            }

            cursor += size;
        }

        if (ranges.Zip(ranges.Skip(1)).Any(p => p.First.What == "free" && p.Second.What == "free"))
        {
            throw new InvalidOperationException($"Slab {slab.Id}: adjacent free extents were not merged.");
        }

        if (extents.Sum(e => e.Size) != free)
        {
            throw new InvalidOperationException($"Slab {slab.Id}: free extents sum to {extents.Sum(e => e.Size)}, the allocator says {free}.");
        }

        if (cursor != slab.Capacity)
        {
            throw new InvalidOperationException($"Slab {slab.Id}: blocks and free extents cover {cursor} of {slab.Capacity} bytes.");
        }
    }
}
