using FaaSTube.Devices;

namespace FaaSTube.Memory;

/// <summary>
/// The pool's copy lanes: a few streams (created on first use) over which evictions, restores and slab
/// clears run. Each copy takes the lane with the fewest bytes queued on it when it starts, so one
/// tenant's multi-GiB move occupies one lane and another tenant's move starts on a free one: a copy
/// waits behind another only when every lane is busy. (Hashing partitions to lanes, as before, let two
/// tenants share a lane while others stood idle.)
/// </summary>
internal sealed class MoveLanes : IDisposable
{
    /// <summary>How many lanes (streams) a pool copies on.</summary>
    public const int Count = 4;

    private readonly Lazy<GpuStream>[] _streams;
    private readonly long[] _queuedBytes = new long[Count];

    public MoveLanes(GpuDevice device) =>
        _streams = Enumerable.Range(0, Count).Select(_ => new Lazy<GpuStream>(() => device.CreateStream(), LazyThreadSafetyMode.ExecutionAndPublication)).ToArray();

    /// <summary>Bytes queued now on <paramref name="lane"/> by the copies that took it.</summary>
    public long QueuedBytes(int lane) => Volatile.Read(ref _queuedBytes[lane]);

    /// <summary>Takes the least-loaded lane for a copy of <paramref name="bytes"/>; dispose the lease when the copy has finished or failed.</summary>
    public Lease Take(long bytes)
    {
        int best = 0;
        for (int i = 1; i < Count; i++)
        {
            if (QueuedBytes(i) < QueuedBytes(best))
            {
                best = i;
            }
        }

        Interlocked.Add(ref _queuedBytes[best], bytes);
        return new Lease(this, best, bytes);
    }

    /// <summary>Disposes the streams that were created.</summary>
    public void Dispose()
    {
        foreach (var stream in _streams.Where(s => s.IsValueCreated))
        {
            stream.Value.Dispose();
        }
    }

    /// <summary>A copy's hold on a lane: its stream, and its bytes counted on the lane until disposed.</summary>
    public readonly struct Lease(MoveLanes lanes, int lane, long bytes) : IDisposable
    {
        /// <summary>Which lane (0 to <see cref="Count"/> - 1).</summary>
        public int Lane => lane;

        /// <summary>The lane's stream.</summary>
        public GpuStream Stream => lanes._streams[lane].Value;

        public void Dispose() => Interlocked.Add(ref lanes._queuedBytes[lane], -bytes);
    }
}
