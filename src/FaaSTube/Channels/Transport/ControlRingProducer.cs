using System.Runtime.CompilerServices;
using static FaaSTube.Channels.Transport.ControlRingLayout;

namespace FaaSTube.Channels.Transport;

/// <summary>
/// The producing half of one ring (ControlRingLayout.cs): writes whole records and publishes them
/// by advancing its sequence. Its own sequence lives in a private field and is only ever written
/// to shared memory, never read back; the consumer's sequence is read once per attempt and checked
/// (it never goes back, never passes what was published), so a peer that scribbles on the header
/// gets <see cref="InvalidDataException"/>, never a write outside the data area.
/// </summary>
internal sealed unsafe class ControlRingProducer
{
    private readonly byte* _header;
    private readonly byte* _data;
    private readonly int _capacity;
    private ulong _tail; // bytes published: private, the truth
    private ulong _head; // the consumer's sequence as last seen and checked

    public ControlRingProducer(byte* ring, int capacity)
    {
        _header = ring;
        _data = ring + HeaderBytes;
        _capacity = capacity;
    }

    /// <summary>The consumer's sequence (the word a full ring waits on).</summary>
    public ulong* ConsumerSequence => (ulong*)(_header + ConsumerSequenceOffset);

    /// <summary>This side's sleeper word (futex): 1 while it waits for space.</summary>
    public int* Sleeper => (int*)(_header + ProducerSleeperOffset);

    /// <summary>The consumer's sequence as last seen (wait for it to change).</summary>
    public ulong SeenHead => _head;

    /// <summary>Writes one record and publishes it; false when the ring has no room for it now. Throws <see cref="InvalidDataException"/> when the consumer's sequence is impossible.</summary>
    public bool TryWrite(byte type, uint requestId, ReadOnlySpan<byte> payload)
    {
        int size = RecordBytes(payload.Length);
        int offset = (int)(_tail & (ulong)(_capacity - 1));
        int tillEnd = _capacity - offset; // a multiple of 16, never 0
        int needed = size <= tillEnd ? size : tillEnd + size;
        if ((ulong)needed > FreeBytes())
        {
            return false;
        }

        if (size > tillEnd)
        {
            WriteRecordHeader(new Span<byte>(_data + offset, RecordHeaderBytes), WrapType, 0, 0);
            offset = 0;
        }

        WriteRecordHeader(new Span<byte>(_data + offset, RecordHeaderBytes), type, requestId, payload.Length);
        payload.CopyTo(new Span<byte>(_data + offset + RecordHeaderBytes, payload.Length));
        _tail += (ulong)needed;
        Interlocked.Exchange(ref *(ulong*)(_header + ProducerSequenceOffset), _tail); // publish; a full fence before the sleeper is read
        ControlRingSleeper.WakeIfSleeping((int*)(_header + ConsumerSleeperOffset));
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong FreeBytes()
    {
        ulong head = Volatile.Read(ref *ConsumerSequence); // read once: the peer may change it at any time
        if (head < _head || head > _tail)
        {
            throw new InvalidDataException(
                $"The control ring's consumer sequence is {head}: it must lie between the last seen {_head} and the {_tail} bytes published.");
        }

        _head = head;
        return (ulong)_capacity - (_tail - head);
    }
}
