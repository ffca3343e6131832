using System.Collections.Concurrent;
using System.Numerics;
using FaaSTube.Devices;

namespace FaaSTube.Transfers;

/// <summary>
/// Pinned host memory rented from a <see cref="TransferEngine"/>: write into <see cref="Memory"/>
/// directly and transfer it with no staging copy. Dispose to give it back for reuse.
/// </summary>
public sealed class PinnedRental : IDisposable
{
    private readonly PinnedBufferPool _pool;
    private PinnedBuffer? _buffer;

    internal PinnedRental(PinnedBufferPool pool, PinnedBuffer buffer, int length)
    {
        _pool = pool;
        _buffer = buffer;
        Length = length;
    }

    /// <summary>Bytes asked for.</summary>
    public int Length { get; }

    /// <summary>The pinned bytes (exactly <see cref="Length"/>).</summary>
    public Memory<byte> Memory => (_buffer ?? throw new ObjectDisposedException(nameof(PinnedRental))).Memory[..Length];

    /// <summary>Returns the memory for reuse.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _buffer, null) is { } buffer)
        {
            _pool.Return(buffer);
        }
    }
}

/// <summary>
/// Pinned buffers by power-of-two size class (64 KiB and up), kept for reuse: pinning costs
/// milliseconds, reuse costs nothing. Each class keeps at most <see cref="KeptPerClass"/> idle buffers
/// and frees the ones it does not keep (<see cref="DisposingObjectPool{T}"/>), so pinned memory
/// follows the peak of concurrent rentals instead of only growing. Disposing frees the idle buffers;
/// buffers still rented are freed when they come back.
/// </summary>
internal sealed class PinnedBufferPool(GpuDevice device) : IDisposable
{
    /// <summary>Idle buffers kept per size class.</summary>
    public const int KeptPerClass = 8;

    private const int MinClass = 16; // 64 KiB
    private readonly GpuDevice _device = device;
    private readonly ConcurrentDictionary<int, DisposingObjectPool<PinnedBuffer>> _classes = new();

    /// <summary>Idle buffers held now, over all size classes.</summary>
    public int IdleCount => _classes.Values.Sum(c => c.Count);

    public PinnedRental Rent(int bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        int sizeClass = Math.Max(MinClass, (int)BitOperations.Log2(BitOperations.RoundUpToPowerOf2((uint)bytes)));
        var buffer = Pool(sizeClass).Get();
        return new PinnedRental(this, buffer, bytes);
    }

    public void Return(PinnedBuffer buffer) =>
        Pool(BitOperations.Log2((uint)buffer.Length)).Return(buffer);

    private DisposingObjectPool<PinnedBuffer> Pool(int sizeClass) =>
        _classes.GetOrAdd(sizeClass, c => new DisposingObjectPool<PinnedBuffer>(
            () => _device.AllocatePinned(Math.Min(1L << c, int.MaxValue)), KeptPerClass));

    public void Dispose()
    {
        foreach (var pool in _classes.Values)
        {
            pool.Dispose();
        }
    }
}
