using FaaSTube.Devices;

namespace FaaSTube.Channels.Protocol.Messages;

/// <summary>
/// The first frame of a connection; the window's descriptor travels with it (SCM_RIGHTS,
/// src/FaaSTube/Channels/Transport/UnixRights.cs), and the control ring's after it when
/// <see cref="RingBytes"/> is not 0 (src/FaaSTube/Channels/Transport/ControlRing.cs).
/// </summary>
internal readonly record struct Hello(ushort Version, [Wire("name")] string Workflow, [Wire("name")] string Function, long WindowBytes, long RingBytes)
    : IPayload<Hello>, IRequest<HelloOk>
{
    public FrameType Type => FrameType.Hello;

    public void Write(PayloadWriter writer) => writer.U16(Version).Str(Workflow).Str(Function).I64(WindowBytes).I64(RingBytes);

    /// <summary>The version first: a peer of another version gets <see cref="TubeError.VersionMismatch"/>, whatever follows.</summary>
    public static Hello Read(ref PayloadReader reader)
    {
        ushort version = reader.U16();
        if (version != Frames.Version)
        {
            throw new TubeException(TubeError.VersionMismatch, $"The node speaks protocol {Frames.Version}; the client {version}.");
        }

        return new(version, reader.Name(), reader.Name(), reader.I64(), reader.I64());
    }
}

/// <summary>The node's answer to <see cref="Hello"/>; <see cref="Ring"/>: whether it took the control ring (false: requests go on the socket).</summary>
internal readonly record struct HelloOk(ushort Version, long SessionId, int GpuCount, [Wire("u8")] GpuBackend Backend, bool Ring) : IPayload<HelloOk>
{
    public void Write(PayloadWriter writer) => writer.U16(Version).I64(SessionId).I32(GpuCount).U8((byte)Backend).U8(Ring ? (byte)1 : (byte)0);

    public static HelloOk Read(ref PayloadReader reader) => new(reader.U16(), reader.I64(), reader.I32(), (GpuBackend)reader.U8(), reader.U8() != 0);
}

/// <summary>
/// The network gateway's first frame, sent instead of <see cref="Hello"/> on a local connection the
/// gateway opens for one remote client it has authenticated (docs/protocol.md, Handshake): the key
/// the node gave the gateway it spawned (<see cref="TubeNode.GatewayKey"/>), the client's workflow and
/// function, and its window, whose descriptor travels with it like Hello's, and the relay's control
/// ring's after it when <see cref="RingBytes"/> is not 0 (checked and taken as Hello's). The node
/// answers with <see cref="HelloOk"/> (ring: whether it took the ring) and serves the session as a
/// remote client's.
/// </summary>
/// <param name="Version">The protocol version, first: a peer of another version gets <see cref="TubeError.VersionMismatch"/>.</param>
/// <param name="Key">Exactly <see cref="KeyBytes"/> bytes; compared in fixed time with the node's.</param>
/// <param name="Workflow">The remote client's workflow (the gateway checked the client knows its secret).</param>
/// <param name="Function">The remote client's function.</param>
/// <param name="WindowBytes">The window's bytes: 8 KiB up to <see cref="TubeNodeOptions.MaxWindowBytes"/>.</param>
/// <param name="RingBytes">The control ring's bytes (0: none; requests go on the socket).</param>
internal readonly record struct GatewayHello(ushort Version, byte[] Key, [Wire("name")] string Workflow, [Wire("name")] string Function, long WindowBytes, long RingBytes)
    : IPayload<GatewayHello>, IRequest<HelloOk>
{
    /// <summary>The key's length: 32 random bytes.</summary>
    public const int KeyBytes = 32;

    public FrameType Type => FrameType.GatewayHello;

    public void Write(PayloadWriter writer) => writer.U16(Version).Bytes(Key).Str(Workflow).Str(Function).I64(WindowBytes).I64(RingBytes);

    /// <summary>The version first (<see cref="TubeError.VersionMismatch"/>), then a key of exactly <see cref="KeyBytes"/> (any other length is malformed: <see cref="InvalidDataException"/>).</summary>
    public static GatewayHello Read(ref PayloadReader reader)
    {
        ushort version = reader.U16();
        if (version != Frames.Version)
        {
            throw new TubeException(TubeError.VersionMismatch, $"The node speaks protocol {Frames.Version}; the gateway {version}.");
        }

        return new(version, reader.Bytes(KeyBytes), reader.Name(), reader.Name(), reader.I64(), reader.I64());
    }

    /// <summary>Equal fields, the key's bytes compared (not in fixed time: the node's check is in src/FaaSTube/Channels/FramedSession.cs).</summary>
    public bool Equals(GatewayHello other) =>
        Version == other.Version && Key.AsSpan().SequenceEqual(other.Key) && Workflow == other.Workflow && Function == other.Function && WindowBytes == other.WindowBytes && RingBytes == other.RingBytes;

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Version, Workflow, Function, WindowBytes, RingBytes);

    /// <summary>The fields but the key, which no log or message shows.</summary>
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append($"Version = {Version}, Workflow = {Workflow}, Function = {Function}, WindowBytes = {WindowBytes}, RingBytes = {RingBytes}");
        return true;
    }
}
