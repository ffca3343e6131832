namespace FaaSTube.Channels.Protocol.Messages;

/// <summary>
/// A lease on data for GPU <see cref="Device"/>, or -1 for a read to the host (<see cref="GetToHost"/>
/// parts follow). Data allocated but not yet published is waited for, up to <see cref="WaitMilliseconds"/>
/// (the node caps it at its own limit).
/// </summary>
internal readonly record struct Get(TubeId Id, int Device, int WaitMilliseconds) : IPayload<Get>, IRequest<GetOk>
{
    public FrameType Type => FrameType.Get;

    public void Write(PayloadWriter writer) => writer.Id(Id).I32(Device).I32(WaitMilliseconds);

    public static Get Read(ref PayloadReader reader) => new(reader.Id(), reader.I32(), reader.I32());
}

/// <summary>The data's length, the path it took, and, unless the Get was to the host, where it lies (the payload ends after the path otherwise).</summary>
internal readonly record struct GetOk(long Length, TubePath Path, Mapping? Mapping) : IPayload<GetOk>
{
    public void Write(PayloadWriter writer)
    {
        writer.I64(Length).U8((byte)Path);
        Mapping?.Write(writer);
    }

    public static GetOk Read(ref PayloadReader reader)
    {
        long length = reader.I64();
        var path = (TubePath)reader.U8();
        if (!Enum.IsDefined(path))
        {
            throw new InvalidDataException($"Unknown data path {(byte)path}.");
        }

        return new(length, path, reader.AtEnd ? null : Messages.Mapping.Read(ref reader));
    }
}

/// <summary>One part of held data to the client's window.</summary>
internal readonly record struct GetToHost(TubeId Id, long Offset, int WindowOffset, int Length) : IPayload<GetToHost>, IRequest<Empty>
{
    public FrameType Type => FrameType.GetToHost;

    public void Write(PayloadWriter writer) => writer.Id(Id).I64(Offset).I32(WindowOffset).I32(Length);

    public static GetToHost Read(ref PayloadReader reader) => new(reader.Id(), reader.I64(), reader.I32(), reader.I32());
}

/// <summary>
/// A Get to the host in one request when the data fits: a lease as <see cref="Get"/> with device -1,
/// then, if the data is at most <see cref="MaxLength"/> bytes, the whole of it copied to the window at
/// <see cref="WindowOffset"/> and the lease released (one consumer done), as one GetToHost part and
/// a Release would. Answered with <see cref="GetOk"/>: a length over <see cref="MaxLength"/> means
/// nothing was copied and the lease is held (GetToHost parts and a Release follow, as after a Get).
/// </summary>
internal readonly record struct GetWhole(TubeId Id, int WindowOffset, int MaxLength, int WaitMilliseconds) : IPayload<GetWhole>, IRequest<GetOk>
{
    public FrameType Type => FrameType.GetWhole;

    public void Write(PayloadWriter writer) => writer.Id(Id).I32(WindowOffset).I32(MaxLength).I32(WaitMilliseconds);

    public static GetWhole Read(ref PayloadReader reader) => new(reader.Id(), reader.I32(), reader.I32(), reader.I32());
}
