namespace FaaSTube.Channels.Protocol.Messages;

/// <summary>The node's push (request id 0): the slab is retiring, close its mapping once no buffer uses it.</summary>
internal readonly record struct CloseSlab(int Device, int Slab, int Generation) : IPayload<CloseSlab>
{
    public void Write(PayloadWriter writer) => writer.I32(Device).I32(Slab).I32(Generation);

    public static CloseSlab Read(ref PayloadReader reader) => new(reader.I32(), reader.I32(), reader.I32());
}

/// <summary>The client's answer to <see cref="CloseSlab"/>: its mapping is closed.</summary>
internal readonly record struct SlabClosed(int Device, int Slab, int Generation) : IPayload<SlabClosed>, IRequest<Empty>
{
    public FrameType Type => FrameType.SlabClosed;

    public void Write(PayloadWriter writer) => writer.I32(Device).I32(Slab).I32(Generation);

    public static SlabClosed Read(ref PayloadReader reader) => new(reader.I32(), reader.I32(), reader.I32());
}
