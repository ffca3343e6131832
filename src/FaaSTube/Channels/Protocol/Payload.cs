namespace FaaSTube.Channels.Protocol;

/// <summary>
/// A payload of the wire protocol (docs/protocol.md): its layout exists once, in its own
/// <see cref="IMessage.Write"/> and <see cref="Read"/>, which the node and the client both use.
/// <para>Field convention, checked against the doc by tests/FaaSTube.Tests/Channels/ProtocolDocTests.cs:
/// the fields are the record's primary constructor parameters, in order; a field's doc name is the
/// parameter's name in kebab-case (<c>WindowOffset</c> is <c>window-offset</c>); its wire type follows
/// from the C# type (<c>byte</c> and <c>bool</c> u8, <c>ushort</c> u16, <c>int</c> i32, <c>long</c> i64,
/// <c>TubeId</c> id, <c>byte[]</c> bytes, an enum by its underlying type, a nested payload by its name
/// in lower case) unless a <see cref="WireAttribute"/> says otherwise (every string says str or name).</para>
/// </summary>
internal interface IPayload<TSelf> : IMessage
    where TSelf : IPayload<TSelf>
{

    /// <summary>Reads the fields, in order, with every check that needs no node state; <see cref="InvalidDataException"/> when malformed.</summary>
    static abstract TSelf Read(ref PayloadReader reader);
}

/// <summary>Any payload, written without knowing its type (a reply the node sends back).</summary>
internal interface IMessage
{
    /// <summary>Appends the fields, in order.</summary>
    void Write(PayloadWriter writer);
}

/// <summary>Any request, whatever its answer: what the node's session executes.</summary>
internal interface IRequest : IMessage
{
    /// <summary>The frame type the request travels as.</summary>
    FrameType Type { get; }
}

/// <summary>A request: its frame type, and the payload its <c>Ok</c> answer carries.</summary>
internal interface IRequest<TReply> : IRequest
    where TReply : IPayload<TReply>
{
}

/// <summary>The wire type of a field where its C# type does not say it (see <see cref="IPayload{TSelf}"/>).</summary>
[AttributeUsage(AttributeTargets.Parameter)]
internal sealed class WireAttribute(string type) : Attribute
{
    /// <summary>As docs/protocol.md writes it: u8, u16, i32, i64, id, bytes, str, name.</summary>
    public string Type { get; } = type;
}

/// <summary>Encoding and decoding whole payloads.</summary>
internal static class Payload
{
    /// <summary>Reads a whole payload as <typeparamref name="T"/>; bytes after its fields are ignored.</summary>
    public static T Read<T>(ReadOnlySpan<byte> payload)
        where T : IPayload<T>
    {
        var reader = new PayloadReader(payload);
        return T.Read(ref reader);
    }

    /// <summary>The payload's bytes, in a writer.</summary>
    public static PayloadWriter Writer<T>(T payload)
        where T : IPayload<T>
    {
        var writer = new PayloadWriter();
        payload.Write(writer);
        return writer;
    }
}
