namespace FaaSTube.Channels.Protocol.Messages;

/// <summary>
/// Starts a Put of a named object: a block of <see cref="Length"/> bytes on GPU <see cref="Device"/>, in
/// the scope's partition (<see cref="Namespace"/> empty: the workflow's own scope; else a namespace the
/// node's <see cref="TubeNodeOptions.AuthorizeNamespace"/> grants the workflow). PutPart fills it and
/// NamedCommit makes it the name's new version.
/// </summary>
internal readonly record struct NamedPutBegin([Wire("name")] string Namespace, [Wire("name")] string Name, long Length, int Device)
    : IPayload<NamedPutBegin>, IRequest<PutBeginOk>
{
    public FrameType Type => FrameType.NamedPutBegin;

    public void Write(PayloadWriter writer) => writer.Str(Namespace).Str(Name).I64(Length).I32(Device);

    public static NamedPutBegin Read(ref PayloadReader reader) => new(reader.Name(), reader.Name(), reader.I64(), reader.I32());
}

/// <summary>
/// Starts a named object written on the GPU (a loader's own kernel or device copy): a block of
/// <see cref="Length"/> bytes on GPU <see cref="Device"/> in the scope's partition, mapped into the client
/// as an Allocate's is; NamedCommit makes it the name's new version (no host copy), Release drops it.
/// </summary>
internal readonly record struct NamedAllocate([Wire("name")] string Namespace, [Wire("name")] string Name, long Length, int Device)
    : IPayload<NamedAllocate>, IRequest<AllocateOk>
{
    public FrameType Type => FrameType.NamedAllocate;

    public void Write(PayloadWriter writer) => writer.Str(Namespace).Str(Name).I64(Length).I32(Device);

    public static NamedAllocate Read(ref PayloadReader reader) => new(reader.Name(), reader.Name(), reader.I64(), reader.I32());
}

/// <summary>
/// Makes a named Put the name's current version (the one before stays with the readers that hold it);
/// <see cref="Cacheable"/>: evictable under pressure (else kept resident until replaced or deleted);
/// <see cref="LoadTicks"/>: how long the client took to produce it (0: unknown), the reload cost the cache weighs.
/// </summary>
internal readonly record struct NamedCommit(TubeId Id, bool Cacheable, long LoadTicks) : IPayload<NamedCommit>, IRequest<NamedCommitOk>
{
    public FrameType Type => FrameType.NamedCommit;

    public void Write(PayloadWriter writer) => writer.Id(Id).U8(Cacheable ? (byte)1 : (byte)0).I64(LoadTicks);

    public static NamedCommit Read(ref PayloadReader reader) => new(reader.Id(), reader.U8() != 0, reader.I64());
}

/// <summary>The version the commit made (1 for a name's first).</summary>
internal readonly record struct NamedCommitOk(long Version) : IPayload<NamedCommitOk>
{
    public void Write(PayloadWriter writer) => writer.I64(Version);

    public static NamedCommitOk Read(ref PayloadReader reader) => new(reader.I64());
}

/// <summary>What a <see cref="NamedGet"/> answered.</summary>
internal enum NamedGetStatus : byte
{
    /// <summary>The current version, leased to the client.</summary>
    Found = 1,

    /// <summary>The name has no version and nobody loads it: the client is now its loader (asked with load 1).</summary>
    Load = 2,

    /// <summary>Another client still loads it after the wait: ask again.</summary>
    Pending = 3,
}

/// <summary>
/// A lease on the current version of a name, for GPU <see cref="Device"/> (-1: for a read to host
/// memory, GetToHost parts follow, as after an id's Get to host). With <see cref="Load"/>, a
/// name without a version makes this client its loader (<see cref="NamedGetStatus.Load"/>) unless another
/// client loads it already, whose load is waited for up to <see cref="WaitMilliseconds"/> (at most
/// <c>MaxPublishWait</c>).
/// </summary>
internal readonly record struct NamedGet([Wire("name")] string Namespace, [Wire("name")] string Name, int Device, int WaitMilliseconds, bool Load)
    : IPayload<NamedGet>, IRequest<NamedGetOk>
{
    public FrameType Type => FrameType.NamedGet;

    public void Write(PayloadWriter writer) => writer.Str(Namespace).Str(Name).I32(Device).I32(WaitMilliseconds).U8(Load ? (byte)1 : (byte)0);

    public static NamedGet Read(ref PayloadReader reader) => new(reader.Name(), reader.Name(), reader.I32(), reader.I32(), reader.U8() != 0);
}

/// <summary>The answer, and when found, the version's id (the lease's, for Release), number, length, path and mapping (the payload ends after the path otherwise).</summary>
internal readonly record struct NamedGetOk(NamedGetStatus Status, TubeId Id, long Version, long Length, TubePath Path, Mapping? Mapping) : IPayload<NamedGetOk>
{
    public void Write(PayloadWriter writer)
    {
        writer.U8((byte)Status).Id(Id).I64(Version).I64(Length).U8((byte)Path);
        Mapping?.Write(writer);
    }

    public static NamedGetOk Read(ref PayloadReader reader)
    {
        var status = (NamedGetStatus)reader.U8();
        if (!Enum.IsDefined(status))
        {
            throw new InvalidDataException($"Unknown named get status {(byte)status}.");
        }

        var id = reader.Id();
        long version = reader.I64();
        long length = reader.I64();
        var path = (TubePath)reader.U8();
        if (!Enum.IsDefined(path))
        {
            throw new InvalidDataException($"Unknown data path {(byte)path}.");
        }

        return new(status, id, version, length, path, reader.AtEnd ? null : Messages.Mapping.Read(ref reader));
    }
}

/// <summary>Every GPU that holds a copy of a name's current version.</summary>
internal readonly record struct NamedWhere([Wire("name")] string Namespace, [Wire("name")] string Name) : IPayload<NamedWhere>, IRequest<NamedWhereOk>
{
    public FrameType Type => FrameType.NamedWhere;

    public void Write(PayloadWriter writer) => writer.Str(Namespace).Str(Name);

    public static NamedWhere Read(ref PayloadReader reader) => new(reader.Name(), reader.Name());
}

/// <summary>The GPUs as a mask (bit n: GPU n holds a copy), and the version they hold.</summary>
internal readonly record struct NamedWhereOk(long Devices, long Version) : IPayload<NamedWhereOk>
{
    public void Write(PayloadWriter writer) => writer.I64(Devices).I64(Version);

    public static NamedWhereOk Read(ref PayloadReader reader) => new(reader.I64(), reader.I64());
}

/// <summary>The client's load of a name failed (its loader threw): the clients waiting for it get <see cref="Message"/>, the next one loads again.</summary>
internal readonly record struct NamedLoadFailed([Wire("name")] string Namespace, [Wire("name")] string Name, [Wire("str")] string Message)
    : IPayload<NamedLoadFailed>, IRequest<Empty>
{
    public FrameType Type => FrameType.NamedLoadFailed;

    public void Write(PayloadWriter writer) => writer.Str(Namespace).Str(Name).Str(Message);

    public static NamedLoadFailed Read(ref PayloadReader reader) => new(reader.Name(), reader.Name(), reader.Str());
}

/// <summary>Removes a name (its versions stay with the readers that hold them).</summary>
internal readonly record struct NamedDelete([Wire("name")] string Namespace, [Wire("name")] string Name) : IPayload<NamedDelete>, IRequest<Empty>
{
    public FrameType Type => FrameType.NamedDelete;

    public void Write(PayloadWriter writer) => writer.Str(Namespace).Str(Name);

    public static NamedDelete Read(ref PayloadReader reader) => new(reader.Name(), reader.Name());
}
