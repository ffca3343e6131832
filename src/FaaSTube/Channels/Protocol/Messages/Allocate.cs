namespace FaaSTube.Channels.Protocol.Messages;

/// <summary>Pool memory for the client to write in place, mapped into its process.</summary>
internal readonly record struct Allocate(long Length, int Device) : IPayload<Allocate>, IRequest<AllocateOk>
{
    public FrameType Type => FrameType.Allocate;

    public void Write(PayloadWriter writer) => writer.I64(Length).I32(Device);

    public static Allocate Read(ref PayloadReader reader) => new(reader.I64(), reader.I32());
}

/// <summary>The allocation's id and where it lies.</summary>
internal readonly record struct AllocateOk(TubeId Id, Mapping Mapping) : IPayload<AllocateOk>
{
    public void Write(PayloadWriter writer) => Mapping.Write(writer.Id(Id));

    public static AllocateOk Read(ref PayloadReader reader) => new(reader.Id(), Messages.Mapping.Read(ref reader));
}

/// <summary>Makes an allocation the client wrote visible to the workflow (the layout of <see cref="PutCommit"/>).</summary>
internal readonly record struct Publish(TubeId Id, int Consumers, long TtlTicks, bool KeepUntilDeleted) : IPayload<Publish>, IRequest<Empty>
{
    public FrameType Type => FrameType.Publish;

    public void Write(PayloadWriter writer) => writer.Id(Id).I32(Consumers).I64(TtlTicks).U8(KeepUntilDeleted ? (byte)1 : (byte)0);

    public static Publish Read(ref PayloadReader reader) => new(reader.Id(), reader.I32(), reader.I64(), reader.U8() != 0);
}
