using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text;

namespace FaaSTube.Channels.Protocol;

/// <summary>Frame types of the wire protocol (docs/protocol.md).</summary>
internal enum FrameType : byte
{
    Hello = 1,
    PutBegin = 2,
    PutPart = 3,
    PutCommit = 4,
    Allocate = 5,
    Publish = 6,
    Get = 7,
    GetToHost = 8,
    Release = 9,
    Where = 10,
    SlabClosed = 11,
    Delete = 12,
    Sync = 13,
    NamedPutBegin = 14,
    NamedCommit = 15,
    NamedGet = 16,
    NamedWhere = 17,
    NamedLoadFailed = 18,
    NamedDelete = 19,
    Status = 20,
    ArenaLease = 21,
    ArenaCarve = 22,
    ArenaReturn = 23,
    NamedAllocate = 24,
    GatewayHello = 25,
    PutWhole = 26,
    GetWhole = 27,

    Ok = 128,
    Error = 129,
    CloseSlab = 130,
}

/// <summary>The requests that go one way: no <c>Ok</c> comes back, only an <c>Error</c> with their request id when one fails.</summary>
internal static class OneWay
{
    /// <summary>
    /// Publish, Release, ArenaCarve and ArenaReturn: a producer's handoff (an allocation carved from its
    /// arena range, then its publish) and a consumer's end cost no round trip. The node
    /// applies them in the order they arrive, before it reads the next frame, so a later request on
    /// the same connection sees their effect (<c>Sync</c> waits for exactly that).
    /// </summary>
    public static bool Is(FrameType type) => type is FrameType.Publish or FrameType.Release or FrameType.ArenaCarve or FrameType.ArenaReturn;
}

/// <summary>
/// Framing: <c>u32 length | u8 type | u32 request id | payload</c>, little-endian, where length
/// counts type, id and payload. Frames over the agreed maximum are refused before they are buffered.
/// </summary>
internal static class Frames
{
    /// <summary>7: PutWhole (26) and GetWhole (27), a Put or a Get to the host in one request when the data fits one window range (6: a Get's path may be 5 (node fetch: copied from a peer node first) (5: arena ranges (ArenaLease 21, ArenaCarve 22, ArenaReturn 23), NamedAllocate (24) and NamedGet to host memory (device -1); 4: every request after Hello began with its W3C trace context; 3: Publish and Release went one way, Get waited for a publish and reported its path; 2: the window became a descriptor passed with Hello)).</summary>
    public const ushort Version = 7;
    public const int HeaderBytes = 9;

    /// <summary>The longest workflow, function or tenant name, in UTF-8 bytes.</summary>
    public const int MaxNameBytes = 256;

    /// <summary>Reads one frame; null at a clean end of stream. Throws <see cref="InvalidDataException"/> on a bad or oversized frame.</summary>
    public static async ValueTask<(FrameType Type, uint RequestId, byte[] Payload)?> ReadAsync(PipeReader reader, int maxFrameBytes, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (buffer.Length >= 4)
            {
                uint length = ReadUInt32(buffer);
                if (length < 5 || length > maxFrameBytes)
                {
                    reader.AdvanceTo(buffer.Start, buffer.End);
                    CheckLength(length, maxFrameBytes);
                }

                if (buffer.Length >= 4 + length)
                {
                    var frame = buffer.Slice(4, length);
                    var header = frame.Slice(0, 5).ToArray();
                    var payload = frame.Slice(5).ToArray();
                    reader.AdvanceTo(frame.End);
                    return ((FrameType)header[0], BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(1)), payload);
                }
            }

            if (result.IsCompleted || result.IsCanceled)
            {
                reader.AdvanceTo(buffer.Start, buffer.End);
                if (buffer.Length == 0)
                {
                    return null;
                }

                throw new InvalidDataException("The connection ended inside a frame.");
            }

            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>A frame's length field, checked: at least 5 (type and request id), at most <paramref name="maxFrameBytes"/>; else <see cref="InvalidDataException"/>.</summary>
    public static uint CheckLength(uint length, int maxFrameBytes) =>
        length < 5 ? throw new InvalidDataException($"A frame of {length} bytes is too short.")
        : length > maxFrameBytes ? throw new InvalidDataException($"A frame of {length} bytes is over the limit of {maxFrameBytes}.")
        : length;

    /// <summary>One whole frame as bytes (header and payload), for the handshake's descriptor-carrying send.</summary>
    public static byte[] Encode(FrameType type, uint requestId, ReadOnlySpan<byte> payload)
    {
        var frame = new byte[HeaderBytes + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)(5 + payload.Length));
        frame[4] = (byte)type;
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(5), requestId);
        payload.CopyTo(frame.AsSpan(HeaderBytes));
        return frame;
    }

    /// <summary>Writes one frame and flushes.</summary>
    public static async ValueTask WriteAsync(PipeWriter writer, FrameType type, uint requestId, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        var span = writer.GetSpan(HeaderBytes + payload.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(span, (uint)(5 + payload.Length));
        span[4] = (byte)type;
        BinaryPrimitives.WriteUInt32LittleEndian(span[5..], requestId);
        payload.Span.CopyTo(span[HeaderBytes..]);
        writer.Advance(HeaderBytes + payload.Length);
        var flush = await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        if (flush.IsCompleted)
        {
            throw new IOException("The other side closed the connection.");
        }
    }

    private static uint ReadUInt32(ReadOnlySequence<byte> buffer)
    {
        Span<byte> four = stackalloc byte[4];
        buffer.Slice(0, 4).CopyTo(four);
        return BinaryPrimitives.ReadUInt32LittleEndian(four);
    }
}

/// <summary>Builds a payload: fixed-width little-endian fields and length-prefixed UTF-8 strings.</summary>
internal sealed class PayloadWriter
{
    private readonly ArrayBufferWriter<byte> _buffer = new(64);

    public PayloadWriter U8(byte v) { _buffer.GetSpan(1)[0] = v; _buffer.Advance(1); return this; }

    public PayloadWriter U16(ushort v) { BinaryPrimitives.WriteUInt16LittleEndian(_buffer.GetSpan(2), v); _buffer.Advance(2); return this; }

    public PayloadWriter I32(int v) { BinaryPrimitives.WriteInt32LittleEndian(_buffer.GetSpan(4), v); _buffer.Advance(4); return this; }

    public PayloadWriter I64(long v) { BinaryPrimitives.WriteInt64LittleEndian(_buffer.GetSpan(8), v); _buffer.Advance(8); return this; }

    public PayloadWriter Id(TubeId id) { id.Write(_buffer.GetSpan(TubeId.Size)); _buffer.Advance(TubeId.Size); return this; }

    public PayloadWriter Bytes(ReadOnlySpan<byte> bytes) { I32(bytes.Length); _buffer.Write(bytes); return this; }

    /// <summary>Appends bytes as they are, with no length before them (bytes already laid out as fields).</summary>
    public PayloadWriter Raw(ReadOnlySpan<byte> bytes) { _buffer.Write(bytes); return this; }

    public PayloadWriter Str(string s) => Bytes(Encoding.UTF8.GetBytes(s));

    public ReadOnlyMemory<byte> Memory => _buffer.WrittenMemory;
}

/// <summary>Reads a payload written by <see cref="PayloadWriter"/>; any overrun is an <see cref="InvalidDataException"/>.</summary>
internal ref struct PayloadReader(ReadOnlySpan<byte> payload)
{
    private const int MaxString = 4096;
    private ReadOnlySpan<byte> _rest = payload;

    public byte U8() => Take(1)[0];

    public ushort U16() => BinaryPrimitives.ReadUInt16LittleEndian(Take(2));

    public int I32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

    public long I64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

    public TubeId Id() => TubeId.Read(Take(TubeId.Size));

    /// <summary>Whether every byte was read.</summary>
    public readonly bool AtEnd => _rest.IsEmpty;

    /// <summary>The bytes not read yet.</summary>
    public readonly ReadOnlySpan<byte> Rest => _rest;

    public byte[] Bytes() => Field(int.MaxValue).ToArray();

    /// <summary>A length-prefixed field of exactly <paramref name="length"/> bytes (a key): any other length is refused before anything is copied.</summary>
    public byte[] Bytes(int length)
    {
        int n = I32();
        return n == length ? Take(n).ToArray() : throw new InvalidDataException($"A field of {n} bytes where exactly {length} belong.");
    }

    /// <summary>A length-prefixed field of at most <paramref name="max"/> bytes, checked before anything is copied.</summary>
    private ReadOnlySpan<byte> Field(int max)
    {
        int n = I32();
        if (n < 0 || n > _rest.Length)
        {
            throw new InvalidDataException($"A field claims {n} bytes; {_rest.Length} are left.");
        }

        return n > max ? throw new InvalidDataException($"A text field of {n} bytes is over the limit of {max}.") : Take(n);
    }

    /// <summary>A string of at most 4096 bytes of valid UTF-8: two different byte strings never decode to the same text.</summary>
    public string Str() => Decode(Field(MaxString));

    /// <summary>A string of at most <paramref name="maxBytes"/> bytes (a tighter limit than <see cref="Str()"/>'s, checked before anything is decoded).</summary>
    public string Str(int maxBytes) => Decode(Field(Math.Min(maxBytes, MaxString)));

    /// <summary>A name (workflow, function, tenant): valid UTF-8, at most <see cref="Frames.MaxNameBytes"/> bytes, no control characters.</summary>
    public string Name()
    {
        var text = Decode(Field(Frames.MaxNameBytes));
        return text.Any(char.IsControl) ? throw new InvalidDataException("A name holds a control character.") : text;
    }

    private static string Decode(ReadOnlySpan<byte> bytes)
    {
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw new InvalidDataException("A text field is not valid UTF-8.");
        }
    }

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private ReadOnlySpan<byte> Take(int n)
    {
        if (_rest.Length < n)
        {
            throw new InvalidDataException($"The payload ended early: {n} bytes wanted, {_rest.Length} left.");
        }

        var taken = _rest[..n];
        _rest = _rest[n..];
        return taken;
    }
}
