namespace FaaSTube.Channels.Protocol.Messages;

/// <summary>Starts a Put of host data: a block of <see cref="Length"/> bytes on GPU <see cref="Device"/>.</summary>
internal readonly record struct PutBegin(long Length, int Device) : IPayload<PutBegin>, IRequest<PutBeginOk>
{
    public FrameType Type => FrameType.PutBegin;

    public void Write(PayloadWriter writer) => writer.I64(Length).I32(Device);

    public static PutBegin Read(ref PayloadReader reader) => new(reader.I64(), reader.I32());
}

/// <summary>The id of the unfinished Put.</summary>
internal readonly record struct PutBeginOk(TubeId Id) : IPayload<PutBeginOk>
{
    public void Write(PayloadWriter writer) => writer.Id(Id);

    public static PutBeginOk Read(ref PayloadReader reader) => new(reader.Id());
}

/// <summary>One part of a Put, from the client's window to the block; the tenant is ignored (the scheduler's tenant is the session's workflow).</summary>
internal readonly record struct PutPart(TubeId Id, long Offset, int WindowOffset, int Length, [Wire("name")] string Tenant, long SloTicks)
    : IPayload<PutPart>, IRequest<Empty>
{
    public FrameType Type => FrameType.PutPart;

    public void Write(PayloadWriter writer) => writer.Id(Id).I64(Offset).I32(WindowOffset).I32(Length).Str(Tenant).I64(SloTicks);

    public static PutPart Read(ref PayloadReader reader) => new(reader.Id(), reader.I64(), reader.I32(), reader.I32(), reader.Name(), reader.I64());
}

/// <summary>Makes a Put visible to the workflow.</summary>
internal readonly record struct PutCommit(TubeId Id, int Consumers, long TtlTicks, bool KeepUntilDeleted) : IPayload<PutCommit>, IRequest<Empty>
{
    public FrameType Type => FrameType.PutCommit;

    public void Write(PayloadWriter writer) => writer.Id(Id).I32(Consumers).I64(TtlTicks).U8(KeepUntilDeleted ? (byte)1 : (byte)0);

    public static PutCommit Read(ref PayloadReader reader) => new(reader.Id(), reader.I32(), reader.I64(), reader.U8() != 0);
}

/// <summary>
/// A whole Put in one request, for data that fits one window range: the node begins it (a block of
/// <see cref="Length"/> bytes on GPU <see cref="Device"/>), copies the range at <see cref="WindowOffset"/>
/// to it under the SLO, and commits it with the consumers and TTL given, as PutBegin, one PutPart and
/// PutCommit would; answered with the id (<see cref="PutBeginOk"/>). Nothing is left when it fails.
/// </summary>
internal readonly record struct PutWhole(int Length, int Device, int WindowOffset, long SloTicks, int Consumers, long TtlTicks, bool KeepUntilDeleted)
    : IPayload<PutWhole>, IRequest<PutBeginOk>
{
    public FrameType Type => FrameType.PutWhole;

    public void Write(PayloadWriter writer) =>
        writer.I32(Length).I32(Device).I32(WindowOffset).I64(SloTicks).I32(Consumers).I64(TtlTicks).U8(KeepUntilDeleted ? (byte)1 : (byte)0);

    public static PutWhole Read(ref PayloadReader reader) =>
        new(reader.I32(), reader.I32(), reader.I32(), reader.I64(), reader.I32(), reader.I64(), reader.U8() != 0);
}
