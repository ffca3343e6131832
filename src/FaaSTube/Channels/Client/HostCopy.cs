namespace FaaSTube.Channels.Client;

/// <summary>
/// A host memcpy split across threads: one slot's copy into or out of the window is cut into
/// chunks of at least <see cref="MinChunkBytes"/>, at most <see cref="Environment.ProcessorCount"/>
/// of them, copied in parallel. Both sides are pinned for the copy (a window being disposed waits
/// for it; after the dispose the pin throws <see cref="ObjectDisposedException"/>).
/// </summary>
internal static class HostCopy
{
    /// <summary>Below this a thread's share is not worth the hand-off.</summary>
    public const int MinChunkBytes = 256 << 10;

    /// <summary>Copies all of <paramref name="source"/> to the start of <paramref name="destination"/>.</summary>
    public static unsafe void Copy(ReadOnlyMemory<byte> source, Memory<byte> destination)
    {
        if (source.Length > destination.Length)
        {
            throw new ArgumentException($"{source.Length} bytes do not fit in {destination.Length}.", nameof(destination));
        }

        using var from = source.Pin();
        using var to = destination.Pin();
        byte* src = (byte*)from.Pointer;
        byte* dst = (byte*)to.Pointer;
        long length = source.Length;
        int workers = Math.Clamp(source.Length / MinChunkBytes, 1, Environment.ProcessorCount);
        if (workers == 1)
        {
            Buffer.MemoryCopy(src, dst, length, length);
            return;
        }

        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, worker =>
        {
            long start = length * worker / workers;
            long end = length * (worker + 1) / workers;
            Buffer.MemoryCopy(src + start, dst + start, end - start, end - start);
        });
    }
}
