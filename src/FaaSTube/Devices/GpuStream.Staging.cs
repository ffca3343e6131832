using System.Buffers;
using System.Runtime.InteropServices;

namespace FaaSTube.Devices;

/// <summary>
/// Host copies from and to pageable memory. The CUDA driver runs a pageable <c>cuMemcpy*Async</c>
/// synchronously (the calling thread, often a thread-pool thread, blocks for the whole copy), so
/// such copies go through a ring of <see cref="StagingSlots"/> pinned slots of
/// <see cref="StagingSlotBytes"/> each (or <see cref="GpuSystemOptions.CopyChunkBytes"/> when smaller),
/// allocated on the stream's first pageable copy: the caller's
/// thread copies a slot's worth of bytes (CPU work, not a wait) while the GPU moves the previous
/// slot, and every GPU copy is a pinned, asynchronous one. Cancellation is checked between slots.
/// </summary>
public abstract partial class GpuStream
{
    /// <summary>Bytes in one staging slot at most.</summary>
    internal const int StagingSlotBytes = 2 << 20;

    /// <summary>Slots in the ring (two: one filled by the CPU while the GPU moves the other).</summary>
    internal const int StagingSlots = 2;

    private readonly SemaphoreSlim _stagingGate = new(1, 1);
    private PinnedBuffer? _staging;

    /// <summary>Bytes in one slot of this stream's ring: a chunk, at most <see cref="StagingSlotBytes"/>.</summary>
    private int SlotBytes => (int)Math.Min(StagingSlotBytes, Math.Max(8, Device.Options.CopyChunkBytes & ~7L));

    /// <summary>True when <paramref name="host"/> is page-locked memory (a pinned buffer's, or inside one by address).</summary>
    private static unsafe bool IsPinned(Memory<byte> host)
    {
        if (MemoryMarshal.TryGetMemoryManager<byte, PinnedBuffer>(host, out _))
        {
            return true;
        }

        using var pin = host.Pin();
        return PinnedRanges.Contains((nint)pin.Pointer, host.Length);
    }

    private async ValueTask RunStagedCopyAsync(Memory<byte> host, StreamOpKind kind, DeviceMemory device, CancellationToken cancellationToken)
    {
        await _stagingGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfDisposed();
            _staging ??= Device.AllocatePinnedForStaging((long)SlotBytes * StagingSlots);
            using MemoryHandle stagingPin = _staging.Pin(); // the ring outlives a Dispose racing this copy
            var slots = new (ValueTask<ulong> Task, long Offset, int Length)?[StagingSlots];
            device.Buffer.AddRef();
            try
            {
                await CopyThroughSlotsAsync(host, kind, device, slots, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                device.Buffer.Release();
            }
        }
        finally
        {
            _stagingGate.Release();
        }
    }

    private async ValueTask CopyThroughSlotsAsync(
        Memory<byte> host, StreamOpKind kind, DeviceMemory device, (ValueTask<ulong> Task, long Offset, int Length)?[] slots, CancellationToken cancellationToken)
    {
        var staging = _staging!;
        int slotBytes = SlotBytes;
        Exception? first = null;
        int slot = 0;
        try
        {
            for (long done = 0; done < host.Length; done += slotBytes, slot = (slot + 1) % StagingSlots)
            {
                await DrainSlotAsync(host, kind, staging, slotBytes, slots, slot).ConfigureAwait(false);
                if (cancellationToken.IsCancellationRequested)
                {
                    break;
                }

                int length = (int)Math.Min(slotBytes, host.Length - done);
                var slotMemory = staging.Memory.Slice(slot * slotBytes, length);
                nint pointer = staging.Pointer + (slot * slotBytes);
                StreamOp op;
                if (kind == StreamOpKind.HostToDevice)
                {
                    host.Span.Slice((int)done, length).CopyTo(slotMemory.Span);
                    op = new StreamOp(kind, pointer, default, device.Slice(done, length), length);
                }
                else
                {
                    op = new StreamOp(kind, pointer, device.Slice(done, length), default, length);
                }

                slots[slot] = (SubmitAsync(op), done, length);
            }
        }
        catch (Exception e)
        {
            first = e;
        }

        // Every issued slot finishes (and a device-to-host slot is copied out) before the ring is reused or released.
        for (int i = 0; i < StagingSlots; i++, slot = (slot + 1) % StagingSlots)
        {
            try
            {
                await DrainSlotAsync(host, kind, staging, slotBytes, slots, slot).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                first ??= e;
            }
        }

        if (first is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
        }

        cancellationToken.ThrowIfCancellationRequested();
    }

    /// <summary>Waits for the slot's copy, if any; a device-to-host slot is then copied out to its place in <paramref name="host"/>.</summary>
    private static async ValueTask DrainSlotAsync(
        Memory<byte> host, StreamOpKind kind, PinnedBuffer staging, int slotBytes, (ValueTask<ulong> Task, long Offset, int Length)?[] slots, int slot)
    {
        if (slots[slot] is not { } pending)
        {
            return;
        }

        slots[slot] = null;
        await pending.Task.ConfigureAwait(false);
        if (kind == StreamOpKind.DeviceToHost)
        {
            staging.Memory.Slice(slot * slotBytes, pending.Length).Span.CopyTo(host.Span.Slice((int)pending.Offset, pending.Length));
        }
    }

    private void DisposeStaging()
    {
        // A staged copy in flight holds the ring pinned (its Pin), so this frees it only after that copy.
        ((IDisposable?)_staging)?.Dispose();
    }
}
