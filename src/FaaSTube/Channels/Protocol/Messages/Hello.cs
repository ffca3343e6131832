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

/// <summary>PLACEHOLDER (replaced by the node-side branch): the network gateway's Hello for one remote client.</summary>
internal readonly record struct GatewayHello(ushort Version, byte[] Key, [Wire("name")] string Workflow, [Wire("name")] string Function, long WindowBytes)
    : IPayload<GatewayHello>, IRequest<HelloOk>
{
    public FrameType Type => FrameType.GatewayHello;

    public void Write(PayloadWriter writer) => writer.U16(Version).Bytes(Key).Str(Workflow).Str(Function).I64(WindowBytes);

    public static GatewayHello Read(ref PayloadReader reader) => new(reader.U16(), reader.Bytes(), reader.Name(), reader.Name(), reader.I64());
}
