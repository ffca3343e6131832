using System.Collections.Concurrent;
using FaaSTube.Devices;

namespace FaaSTube.Transfers;

/// <summary>
/// Fixed-footprint pinned staging: slots of one chunk each, carved from pinned buffers allocated once
/// (cuMemHostAlloc costs about 1.3 ms per MiB-scale call, so never on the hot path). Renting waits
/// when all slots are out; every slot comes back, whatever happens to its transfer.
/// </summary>
internal sealed class StagingPool : IDisposable
{
    private readonly PinnedBuffer[] _buffers;
    private readonly ConcurrentStack<Memory<byte>> _free = new();
    private readonly SemaphoreSlim _available;

    public StagingPool(GpuDevice device, long totalBytes, int slotBytes)
    {
        SlotBytes = slotBytes;
        Count = (int)Math.Max(1, totalBytes / slotBytes);
        int perBuffer = Math.Max(1, (int.MaxValue / 2) / slotBytes); // at most 1 GiB per pinned allocation
        _buffers = new PinnedBuffer[(Count + perBuffer - 1) / perBuffer];
        for (int b = 0, slot = 0; b < _buffers.Length; b++)
        {
            int slots = Math.Min(perBuffer, Count - slot);
            _buffers[b] = device.AllocatePinned((long)slots * slotBytes);
            for (int i = 0; i < slots; i++, slot++)
            {
                _free.Push(_buffers[b].Memory.Slice(i * slotBytes, slotBytes));
            }
        }

        _available = new SemaphoreSlim(Count, Count);
    }

    public int SlotBytes { get; }

    public int Count { get; }

    /// <summary>Slots not rented now (equal to <see cref="Count"/> when the pool is whole).</summary>
    public int Available => _free.Count;

    public async ValueTask<Memory<byte>> RentAsync(CancellationToken cancellationToken)
    {
        await _available.WaitAsync(cancellationToken).ConfigureAwait(false);
        return _free.TryPop(out var slot) ? slot : throw new InvalidOperationException("Staging pool accounting broke: a permit without a slot.");
    }

    public void Return(Memory<byte> slot)
    {
        _free.Push(slot);
        _available.Release();
    }

    public void Dispose()
    {
        foreach (IDisposable buffer in _buffers)
        {
            buffer.Dispose();
        }
    }
}
