namespace FaaSTube.Channels.Protocol.Messages;

/// <summary>
/// Where a block lies in pool memory, for the client to map: the slab's IPC handle comes only the
/// first time a session sees the slab (empty afterwards, and always for in-process sessions).
/// </summary>
internal readonly record struct Mapping(int Device, int Slab, int Generation, long Offset, long Length, byte[] Handle) : IPayload<Mapping>
{
    public void Write(PayloadWriter writer) => writer.I32(Device).I32(Slab).I32(Generation).I64(Offset).I64(Length).Bytes(Handle);

    public static Mapping Read(ref PayloadReader reader) => new(reader.I32(), reader.I32(), reader.I32(), reader.I64(), reader.I64(), reader.Bytes());

    /// <summary>Equal fields and equal handle bytes.</summary>
    public bool Equals(Mapping other) =>
        (Device, Slab, Generation, Offset, Length) == (other.Device, other.Slab, other.Generation, other.Offset, other.Length)
        && (Handle ?? []).AsSpan().SequenceEqual(other.Handle ?? []);

    public override int GetHashCode() => HashCode.Combine(Device, Slab, Generation, Offset, Length, Handle?.Length ?? 0);
}
