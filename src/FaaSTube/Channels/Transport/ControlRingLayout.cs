using System.Buffers.Binary;
using FaaSTube.Channels.Protocol;
using FaaSTube.Platform;

namespace FaaSTube.Channels.Transport;

/// <summary>
/// Where everything lives in a control ring's shared memory (one sealed memfd, <see cref="SealedSharedMemory"/>):
/// two rings one after the other, requests (client to node) first, then replies (node to client).
/// Each ring is a 256-byte header and a data area of <c>capacity</c> bytes (a power of two):
/// <code>
/// header  +0    u64 producer sequence   (bytes ever published; written by the producer only)
///         +64   i32 producer sleeper    (1: the producer waits for space; a futex word)
///         +128  u64 consumer sequence   (bytes ever consumed; written by the consumer only)
///         +192  i32 consumer sleeper    (1: the consumer waits for data; a futex word)
/// data    records, each 16-byte aligned and contiguous:
///         u32 payload length | u32 request id | u8 type | 3 bytes zero | u32 zero | payload | padding to 16
/// </code>
/// A record that does not fit before the end of the data area is preceded by a wrap marker (type 0,
/// length 0, id 0) at the first free offset: the rest of the area is padding, counted in the
/// sequences, and the record starts at offset 0. Sequences are 64-bit and never wrap in practice;
/// a position in the area is <c>sequence &amp; (capacity - 1)</c>. All little-endian, as the socket frames.
/// </summary>
internal static class ControlRingLayout
{
    /// <summary>A ring's header: four 64-byte cache lines, so the two sides never write the same line.</summary>
    public const int HeaderBytes = 256;

    public const int ProducerSequenceOffset = 0;
    public const int ProducerSleeperOffset = 64;
    public const int ConsumerSequenceOffset = 128;
    public const int ConsumerSleeperOffset = 192;

    /// <summary>A record's header; records start on multiples of it.</summary>
    public const int RecordHeaderBytes = 16;

    /// <summary>The type byte of a wrap marker (no frame type is 0).</summary>
    public const byte WrapType = 0;

    /// <summary>The smallest data area of a ring (4 KiB) and the largest (16 MiB).</summary>
    public const int MinCapacity = 4 << 10;
    public const int MaxCapacity = 16 << 20;

    /// <summary>Bytes of the memfd for rings of <paramref name="capacity"/> data bytes each.</summary>
    public static long TotalBytes(int capacity) => 2L * (HeaderBytes + capacity);

    /// <summary>Offset of ring 0 (requests) or 1 (replies) in the memfd.</summary>
    public static int RingOffset(int ring, int capacity) => ring * (HeaderBytes + capacity);

    /// <summary>True for a power of two in [<see cref="MinCapacity"/>, <see cref="MaxCapacity"/>].</summary>
    public static bool IsValidCapacity(long capacity) =>
        capacity is >= MinCapacity and <= MaxCapacity && (capacity & (capacity - 1)) == 0;

    /// <summary>The capacity of each ring in a memfd of <paramref name="totalBytes"/>, or -1 when no valid layout has that size.</summary>
    public static int CapacityOf(long totalBytes)
    {
        long capacity = totalBytes / 2 - HeaderBytes;
        return totalBytes % 2 == 0 && IsValidCapacity(capacity) ? (int)capacity : -1;
    }

    /// <summary>The largest payload a ring of <paramref name="capacity"/> takes: a record of half the area always fits an empty ring, wherever it starts.</summary>
    public static int MaxPayload(int capacity) => capacity / 2 - RecordHeaderBytes;

    /// <summary>A record's bytes in the area (header, payload, padding to 16).</summary>
    public static int RecordBytes(int payloadLength) => (RecordHeaderBytes + payloadLength + RecordHeaderBytes - 1) & ~(RecordHeaderBytes - 1);

    /// <summary>True for a type a control record may carry (a frame type of docs/protocol.md).</summary>
    public static bool IsKnownType(byte type) => KnownTypes[type];

    private static readonly bool[] KnownTypes = BuildKnownTypes();

    private static bool[] BuildKnownTypes()
    {
        var known = new bool[256];
        foreach (var type in Enum.GetValues<FrameType>())
        {
            known[(byte)type] = true;
        }

        return known;
    }

    public static void WriteRecordHeader(Span<byte> at, byte type, uint requestId, int payloadLength)
    {
        BinaryPrimitives.WriteInt32LittleEndian(at, payloadLength);
        BinaryPrimitives.WriteUInt32LittleEndian(at[4..], requestId);
        BinaryPrimitives.WriteUInt64LittleEndian(at[8..], type);
    }
}
