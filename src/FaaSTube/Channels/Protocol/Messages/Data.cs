namespace FaaSTube.Channels.Protocol.Messages;

/// <summary>A consumer is done with its lease (or a producer drops its unfinished Put or Allocate).</summary>
internal readonly record struct Release(TubeId Id) : IPayload<Release>, IRequest<Empty>
{
    public FrameType Type => FrameType.Release;

    public void Write(PayloadWriter writer) => writer.Id(Id);

    public static Release Read(ref PayloadReader reader) => new(reader.Id());
}

/// <summary>Which GPU holds the data.</summary>
internal readonly record struct Where(TubeId Id) : IPayload<Where>, IRequest<WhereOk>
{
    public FrameType Type => FrameType.Where;

    public void Write(PayloadWriter writer) => writer.Id(Id);

    public static Where Read(ref PayloadReader reader) => new(reader.Id());
}

/// <summary>The GPU that holds the data.</summary>
internal readonly record struct WhereOk(int Device) : IPayload<WhereOk>
{
    public void Write(PayloadWriter writer) => writer.I32(Device);

    public static WhereOk Read(ref PayloadReader reader) => new(reader.I32());
}

/// <summary>Removes data now (data kept until deleted only goes this way).</summary>
internal readonly record struct Delete(TubeId Id) : IPayload<Delete>, IRequest<Empty>
{
    public FrameType Type => FrameType.Delete;

    public void Write(PayloadWriter writer) => writer.Id(Id);

    public static Delete Read(ref PayloadReader reader) => new(reader.Id());
}

/// <summary>Answered once every request sent before it on the connection was applied (one-way requests' errors arrive before its Ok).</summary>
internal readonly record struct Sync : IPayload<Sync>, IRequest<Empty>
{
    public FrameType Type => FrameType.Sync;

    public void Write(PayloadWriter writer)
    {
    }

    public static Sync Read(ref PayloadReader reader) => default;
}
