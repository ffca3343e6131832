namespace FaaSTube.Channels.Protocol.Messages;

/// <summary>Leases the client an arena range: <see cref="Length"/> bytes of one slab on GPU <see cref="Device"/>, its allocations carved from it without a round trip.</summary>
internal readonly record struct ArenaLease(long Length, int Device) : IPayload<ArenaLease>, IRequest<ArenaLeaseOk>
{
    public FrameType Type => FrameType.ArenaLease;

    public void Write(PayloadWriter writer) => writer.I64(Length).I32(Device);

    public static ArenaLease Read(ref PayloadReader reader) => new(reader.I64(), reader.I32());
}

/// <summary>The range's number (this session's) and where it lies.</summary>
internal readonly record struct ArenaLeaseOk(long Range, Mapping Mapping) : IPayload<ArenaLeaseOk>
{
    public void Write(PayloadWriter writer) => Mapping.Write(writer.I64(Range));

    public static ArenaLeaseOk Read(ref PayloadReader reader) => new(reader.I64(), Messages.Mapping.Read(ref reader));
}

/// <summary>
/// One way: the client carved [<see cref="Offset"/>, +<see cref="Length"/>) of its range
/// <see cref="Range"/> as the allocation <see cref="Id"/> (an id it drew); the node registers it as an
/// unfinished allocation of the client (Publish makes it visible, Release drops it).
/// </summary>
internal readonly record struct ArenaCarve(long Range, TubeId Id, long Offset, long Length) : IPayload<ArenaCarve>, IRequest<Empty>
{
    public FrameType Type => FrameType.ArenaCarve;

    public void Write(PayloadWriter writer) => writer.I64(Range).Id(Id).I64(Offset).I64(Length);

    public static ArenaCarve Read(ref PayloadReader reader) => new(reader.I64(), reader.Id(), reader.I64(), reader.I64());
}

/// <summary>One way: the client gives its range <see cref="Range"/> back; what no live piece holds returns to the pool.</summary>
internal readonly record struct ArenaReturn(long Range) : IPayload<ArenaReturn>, IRequest<Empty>
{
    public FrameType Type => FrameType.ArenaReturn;

    public void Write(PayloadWriter writer) => writer.I64(Range);

    public static ArenaReturn Read(ref PayloadReader reader) => new(reader.I64());
}
