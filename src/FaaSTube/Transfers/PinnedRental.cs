using System.Collections.Concurrent;
using System.Numerics;
using FaaSTube.Devices;
using Microsoft.Extensions.ObjectPool;

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
/// Pinned buffers by power-of-two size class (64 KiB and up), kept for reuse
/// (Microsoft.Extensions.ObjectPool): pinning costs milliseconds, reuse costs nothing.
/// </summary>
internal sealed class PinnedBufferPool(GpuDevice device) : IDisposable
{
    private readonly GpuDevice _device = device;
    private const int MinClass = 16; // 64 KiB
    private readonly ConcurrentDictionary<int, ObjectPool<PinnedBuffer>> _classes = new();
    private readonly ConcurrentBag<PinnedBuffer> _all = [];

    public PinnedRental Rent(int bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        int sizeClass = Math.Max(MinClass, (int)BitOperations.Log2(BitOperations.RoundUpToPowerOf2((uint)bytes)));
        var buffer = Pool(sizeClass).Get();
        return new PinnedRental(this, buffer, bytes);
    }

    public void Return(PinnedBuffer buffer) =>
        Pool(BitOperations.Log2((uint)buffer.Length)).Return(buffer);

    private ObjectPool<PinnedBuffer> Pool(int sizeClass) =>
        _classes.GetOrAdd(sizeClass, c => new DefaultObjectPool<PinnedBuffer>(new Policy(this, c), 8));

    public void Dispose()
    {
        foreach (IDisposable buffer in _all)
        {
            buffer.Dispose();
        }
    }

    private sealed class Policy(PinnedBufferPool owner, int sizeClass) : IPooledObjectPolicy<PinnedBuffer>
    {
        public PinnedBuffer Create()
        {
            long size = 1L << sizeClass;
            var buffer = owner._device.AllocatePinned(Math.Min(size, int.MaxValue));
            owner._all.Add(buffer);
            return buffer;
        }

        public bool Return(PinnedBuffer obj) => true;
    }
}
