using System.Buffers.Binary;
using FaaSTube.Channels.Protocol;
using static FaaSTube.Channels.Transport.ControlRingLayout;

namespace FaaSTube.Channels.Transport;

/// <summary>
/// The consuming half of one ring (ControlRingLayout.cs). It trusts nothing in shared memory: the
/// producer's sequence is read once and checked (never behind what was consumed, never more than
/// the capacity ahead), a record's header is copied out once and checked (a known type, a length
/// within the caller's limit, within the bytes announced and before the end of the area, a wrap
/// marker only past offset 0 with a record after it), and the payload is copied out before the
/// consumer's sequence (private here, only ever written to shared memory) moves on. Any violation
/// is an <see cref="InvalidDataException"/>.
/// </summary>
internal sealed unsafe class ControlRingConsumer
{
    private readonly byte* _header;
    private readonly byte* _data;
    private readonly int _capacity;
    private ulong _head; // bytes consumed: private, the truth

    public ControlRingConsumer(byte* ring, int capacity)
    {
        _header = ring;
        _data = ring + HeaderBytes;
        _capacity = capacity;
    }

    /// <summary>The producer's sequence (the word an empty ring waits on).</summary>
    public ulong* ProducerSequence => (ulong*)(_header + ProducerSequenceOffset);

    /// <summary>This side's sleeper word (futex): 1 while it waits for data.</summary>
    public int* Sleeper => (int*)(_header + ConsumerSleeperOffset);

    /// <summary>Bytes consumed so far (wait for the producer's sequence to differ from it).</summary>
    public ulong Head => _head;

    /// <summary>Takes the next record, if one was published; throws <see cref="InvalidDataException"/> on anything a correct producer cannot have written.</summary>
    public bool TryRead(int maxPayloadBytes, out ControlFrame frame)
    {
        frame = default;
        maxPayloadBytes = Math.Min(maxPayloadBytes, MaxPayload(_capacity)); // no record is longer: and a record's size cannot overflow below this
        ulong tail = Volatile.Read(ref *ProducerSequence); // read once
        if (tail == _head)
        {
            return false;
        }

        if (tail < _head || tail - _head > (ulong)_capacity)
        {
            throw new InvalidDataException($"The control ring's producer sequence is {tail}: it must lie between the {_head} bytes consumed and {(ulong)_capacity} beyond.");
        }

        long available = (long)(tail - _head);
        int offset = (int)(_head & (ulong)(_capacity - 1));
        long skipped = 0;
        var (length, requestId, type) = ReadHeader(offset, available);
        if (type == WrapType)
        {
            int padding = _capacity - offset;
            if (offset == 0 || length != 0 || requestId != 0 || available <= padding)
            {
                throw new InvalidDataException($"A wrap marker at offset {offset} with {available} bytes announced: a wrap marker has no payload, never starts the area and is always followed by a record.");
            }

            skipped = padding;
            available -= padding;
            offset = 0;
            (length, requestId, type) = ReadHeader(offset, available);
        }

        if (!IsKnownType(type))
        {
            throw new InvalidDataException($"A control record of unknown type {type}.");
        }

        if (length < 0 || length > maxPayloadBytes)
        {
            throw new InvalidDataException($"A control record of {(uint)length} payload bytes is over the limit of {maxPayloadBytes}.");
        }

        long size = RecordBytes(length);
        if (size > available || size > _capacity - offset)
        {
            throw new InvalidDataException($"A control record of {size} bytes at offset {offset}: only {available} bytes were announced and {_capacity - offset} remain before the end of the ring.");
        }

        if (skipped > 0 && size <= skipped)
        {
            throw new InvalidDataException($"A wrap marker at offset {_capacity - (int)skipped} before a record of {size} bytes that fitted there.");
        }

        var payload = new byte[length];
        new ReadOnlySpan<byte>(_data + offset + RecordHeaderBytes, length).CopyTo(payload); // copied out before the sequence moves on
        frame = new ControlFrame((FrameType)type, requestId, payload);
        _head += (ulong)(skipped + size);
        Interlocked.Exchange(ref *(ulong*)(_header + ConsumerSequenceOffset), _head); // a full fence before the sleeper is read
        ControlRingSleeper.WakeIfSleeping((int*)(_header + ProducerSleeperOffset));
        return true;
    }

    /// <summary>A record header, copied out of shared memory once.</summary>
    private (int Length, uint RequestId, byte Type) ReadHeader(int offset, long available)
    {
        if (available < RecordHeaderBytes)
        {
            throw new InvalidDataException($"The control ring announces {available} bytes at offset {offset}: less than a record header.");
        }

        Span<byte> header = stackalloc byte[RecordHeaderBytes];
        new ReadOnlySpan<byte>(_data + offset, RecordHeaderBytes).CopyTo(header);
        return (BinaryPrimitives.ReadInt32LittleEndian(header), BinaryPrimitives.ReadUInt32LittleEndian(header[4..]), header[8]);
    }
}
