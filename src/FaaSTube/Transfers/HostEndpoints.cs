using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.InteropServices;
using FaaSTube.Devices;

namespace FaaSTube.Transfers;

/// <summary>
/// Where host bytes of a transfer come from. Random-access sources fill any chunk at any time (in
/// parallel); sequential ones (streams, pipes) are read in chunk order.
/// </summary>
internal abstract class HostSource
{
    /// <summary>The part of the source that is already pinned (DMA straight from it), or null.</summary>
    public virtual ReadOnlyMemory<byte>? Pinned => null;

    public virtual bool IsSequential => false;

    /// <summary>Fills <paramref name="into"/> with the bytes at <paramref name="offset"/> (sequential sources: the next bytes).</summary>
    public abstract ValueTask ReadAsync(long offset, Memory<byte> into, CancellationToken cancellationToken);

    /// <summary>Pinned memory (a <see cref="PinnedBuffer"/> or a slice of one) or null.</summary>
    internal static ReadOnlyMemory<byte>? PinnedOrNull(ReadOnlyMemory<byte> memory) =>
        MemoryMarshal.TryGetMemoryManager<byte, PinnedBuffer>(memory, out _, out _, out _) ? memory : (ReadOnlyMemory<byte>?)null; // not `: null`: null would convert to an empty array's memory
}

/// <summary>Where host bytes of a transfer go. Sequential sinks (streams, pipes) are written in chunk order.</summary>
internal abstract class HostSink
{
    public virtual Memory<byte>? Pinned => null;

    public virtual bool IsSequential => false;

    public abstract ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> from, CancellationToken cancellationToken);
}

internal sealed class MemorySource(ReadOnlyMemory<byte> memory) : HostSource
{
    public override ReadOnlyMemory<byte>? Pinned { get; } = PinnedOrNull(memory);

    public override ValueTask ReadAsync(long offset, Memory<byte> into, CancellationToken cancellationToken)
    {
        memory.Span.Slice((int)offset, into.Length).CopyTo(into.Span);
        return ValueTask.CompletedTask;
    }
}

internal sealed class SequenceSource(ReadOnlySequence<byte> sequence) : HostSource
{
    public override ValueTask ReadAsync(long offset, Memory<byte> into, CancellationToken cancellationToken)
    {
        sequence.Slice(offset, into.Length).CopyTo(into.Span);
        return ValueTask.CompletedTask;
    }
}

internal sealed class StreamSource(Stream stream) : HostSource
{
    public override bool IsSequential => true;

    public override async ValueTask ReadAsync(long offset, Memory<byte> into, CancellationToken cancellationToken)
    {
        try
        {
            await stream.ReadExactlyAsync(into, cancellationToken).ConfigureAwait(false);
        }
        catch (EndOfStreamException e)
        {
            throw new EndOfStreamException($"The stream ended at about byte {offset} before filling the destination.", e);
        }
    }
}

internal sealed class PipeReaderSource(PipeReader reader) : HostSource
{
    public override bool IsSequential => true;

    public override async ValueTask ReadAsync(long offset, Memory<byte> into, CancellationToken cancellationToken)
    {
        int filled = 0;
        while (filled < into.Length)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var take = buffer.Slice(0, Math.Min(buffer.Length, into.Length - filled));
            take.CopyTo(into.Span[filled..]);
            filled += (int)take.Length;
            reader.AdvanceTo(take.End, filled < into.Length ? buffer.End : take.End);
            if (filled < into.Length && (result.IsCompleted || result.IsCanceled))
            {
                throw new EndOfStreamException($"The pipe completed at byte {offset + filled} before filling the destination.");
            }
        }
    }
}

internal sealed class MemorySink(Memory<byte> memory) : HostSink
{
    public override Memory<byte>? Pinned { get; } = MemoryMarshal.TryGetMemoryManager<byte, PinnedBuffer>(memory, out _, out _, out _) ? memory : (Memory<byte>?)null;

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> from, CancellationToken cancellationToken)
    {
        from.Span.CopyTo(memory.Span.Slice((int)offset, from.Length));
        return ValueTask.CompletedTask;
    }
}

internal sealed class StreamSink(Stream stream) : HostSink
{
    public override bool IsSequential => true;

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> from, CancellationToken cancellationToken) =>
        stream.WriteAsync(from, cancellationToken);
}

internal sealed class PipeWriterSink(PipeWriter writer) : HostSink
{
    public override bool IsSequential => true;

    public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> from, CancellationToken cancellationToken)
    {
        var result = await writer.WriteAsync(from, cancellationToken).ConfigureAwait(false);
        if (result.IsCompleted)
        {
            throw new InvalidOperationException("The pipe's reader completed: the rest of the data has nowhere to go.");
        }
    }
}

/// <summary>Views memory of an unmanaged T as bytes (for typed sources and destinations).</summary>
internal sealed class ByteMemoryManager<T>(Memory<T> memory) : MemoryManager<byte>
    where T : unmanaged
{
    public override Span<byte> GetSpan() => MemoryMarshal.AsBytes(memory.Span);

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        var handle = memory.Pin();
        unsafe
        {
            return new MemoryHandle((byte*)handle.Pointer + elementIndex, default, new Unpinner(handle));
        }
    }

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
    }

    private sealed class Unpinner(MemoryHandle handle) : IPinnable
    {
        private MemoryHandle _handle = handle;

        public MemoryHandle Pin(int elementIndex) => throw new NotSupportedException();

        public void Unpin() => _handle.Dispose();
    }
}
