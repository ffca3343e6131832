namespace FaaSTube.Channels.Protocol.Messages;

/// <summary>
/// An administrator's question, sent instead of Hello as a connection's first and only frame: what
/// the node holds and does now (src/FaaSTube/Channels/Admin/NodeStatusBuilder.cs). No window, no
/// workflow: only the node's own user or one of <see cref="TubeNodeOptions.AdminUids"/> is answered.
/// </summary>
/// <param name="Version">The protocol version (a peer of another version gets VersionMismatch).</param>
/// <param name="Limit">The most sessions, workflows, objects and transfers to list each (the node clamps it to 0 up to its own cap).</param>
internal readonly record struct Status(ushort Version, int Limit) : IPayload<Status>, IRequest<StatusOk>
{
    public FrameType Type => FrameType.Status;

    public void Write(PayloadWriter writer) => writer.U16(Version).I32(Limit);

    public static Status Read(ref PayloadReader reader)
    {
        ushort version = reader.U16();
        if (version != Frames.Version)
        {
            throw new TubeException(TubeError.VersionMismatch, $"The node speaks protocol {Frames.Version}; the client {version}.");
        }

        return new(version, reader.I32()); // the node clamps the limit to [0, its cap]
    }
}

/// <summary>The node's status: a UTF-8 JSON document (the fields are <see cref="Admin.NodeStatus"/>'s, documented in docs/protocol.md).</summary>
internal readonly record struct StatusOk(byte[] Json) : IPayload<StatusOk>
{
    public void Write(PayloadWriter writer) => writer.Bytes(Json);

    public static StatusOk Read(ref PayloadReader reader) => new(reader.Bytes());

    /// <summary>Equal JSON bytes.</summary>
    public bool Equals(StatusOk other) => Json.AsSpan().SequenceEqual(other.Json);

    /// <inheritdoc/>
    public override int GetHashCode() => Json?.Length ?? 0;
}
