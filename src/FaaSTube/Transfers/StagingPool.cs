using System.Collections.Concurrent;
using FaaSTube.Devices;

namespace FaaSTube.Transfers;

/// <summary>
/// Fixed-footprint pinned staging: slots of one chunk each, carved from pinned buffers allocated once,
/// at the first rent (cuMemHostAlloc costs about 1.3 ms per MiB-scale call, so never on the hot path,
/// and never in a constructor: an engine that moves nothing pins nothing). Renting waits when all
/// slots are out; every slot comes back, whatever happens to its transfer.
/// </summary>
internal sealed class StagingPool : IDisposable
{
    private readonly GpuDevice _device;
    private readonly Lock _allocating = new();
    private readonly ConcurrentStack<Memory<byte>> _free = new();
    private readonly SemaphoreSlim _available;
    private PinnedBuffer[]? _buffers;
    private bool _disposed;

    public StagingPool(GpuDevice device, long totalBytes, int slotBytes)
    {
        _device = device;
        SlotBytes = slotBytes;
        Count = (int)Math.Max(1, totalBytes / slotBytes);
        _available = new SemaphoreSlim(Count, Count);
    }

    public int SlotBytes { get; }

    public int Count { get; }

    /// <summary>Whether the pinned buffers exist yet (they are allocated by the first rent).</summary>
    public bool IsAllocated => Volatile.Read(ref _buffers) is not null;

    /// <summary>Slots not rented now (equal to <see cref="Count"/> when the pool is whole, allocated or not).</summary>
    public int Available => IsAllocated ? _free.Count : Count;

    public async ValueTask<Memory<byte>> RentAsync(CancellationToken cancellationToken)
    {
        EnsureAllocated();
        await _available.WaitAsync(cancellationToken).ConfigureAwait(false);
        return _free.TryPop(out var slot) ? slot : throw new InvalidOperationException("Staging pool accounting broke: a permit without a slot.");
    }

    /// <summary>Allocates every buffer once (the first rent calls it; a node calls it as it starts); a failure frees what was allocated and the next rent tries again.</summary>
    public void EnsureAllocated()
    {
        if (IsAllocated)
        {
            return;
        }

        lock (_allocating)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_buffers is not null)
            {
                return;
            }

            int perBuffer = Math.Max(1, (int.MaxValue / 2) / SlotBytes); // at most 1 GiB per pinned allocation
            var buffers = new List<PinnedBuffer>((Count + perBuffer - 1) / perBuffer);
            try
            {
                for (int slot = 0; slot < Count; slot += perBuffer)
                {
                    buffers.Add(_device.AllocatePinned((long)Math.Min(perBuffer, Count - slot) * SlotBytes));
                }
            }
            catch
            {
                buffers.ForEach(b => ((IDisposable)b).Dispose());
                throw;
            }

            for (int b = 0, slot = 0; b < buffers.Count; b++)
            {
                for (int i = 0; i < perBuffer && slot < Count; i++, slot++)
                {
                    _free.Push(buffers[b].Memory.Slice(i * SlotBytes, SlotBytes));
                }
            }

            Volatile.Write(ref _buffers, [.. buffers]);
        }
    }

    public void Return(Memory<byte> slot)
    {
        _free.Push(slot);
        _available.Release();
    }

    public void Dispose()
    {
        lock (_allocating)
        {
            _disposed = true;
            foreach (IDisposable buffer in _buffers ?? [])
            {
                buffer.Dispose();
            }
        }
    }
}
