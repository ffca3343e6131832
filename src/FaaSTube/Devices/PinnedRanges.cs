namespace FaaSTube.Devices;

/// <summary>
/// The host ranges of this process's live <see cref="PinnedBuffer"/>s (allocated or registered), so
/// a copy can tell page-locked memory from pageable memory by address, whatever wraps it. The CUDA
/// driver runs a pageable <c>cuMemcpy*Async</c> synchronously; <see cref="GpuStream"/> stages those
/// through pinned memory instead, and the simulated GPU counts any that reach it.
/// </summary>
internal static class PinnedRanges
{
    private static readonly Lock Gate = new();
    private static readonly List<(nint Start, long Length)> Ranges = []; // sorted by start, disjoint

    public static void Add(nint start, long length)
    {
        lock (Gate)
        {
            int at = Find(start);
            Ranges.Insert(at < 0 ? ~at : at, (start, length));
        }
    }

    public static void Remove(nint start)
    {
        lock (Gate)
        {
            int at = Find(start);
            if (at >= 0)
            {
                Ranges.RemoveAt(at);
            }
        }
    }

    /// <summary>True when [<paramref name="start"/>, +<paramref name="length"/>) lies inside one live pinned buffer.</summary>
    public static bool Contains(nint start, long length)
    {
        lock (Gate)
        {
            int at = Find(start);
            int candidate = at >= 0 ? at : ~at - 1; // the last range starting at or before start
            if (candidate < 0)
            {
                return false;
            }

            var (s, l) = Ranges[candidate];
            return start >= s && start - s <= l - length;
        }
    }

    private static int Find(nint start)
    {
        int lo = 0, hi = Ranges.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            var s = Ranges[mid].Start;
            if (s == start)
            {
                return mid;
            }

            if (s < start)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return ~lo;
    }
}
