namespace FaaSTube.Channels.Protocol.Messages;

/// <summary>The payload of an <c>Error (129)</c> frame: a request's refusal, or the connection's (request id 0).</summary>
internal readonly record struct Error(TubeError Code, [Wire("str")] string Message) : IPayload<Error>
{
    public void Write(PayloadWriter writer) => writer.U16((ushort)Code).Str(Message);

    public static Error Read(ref PayloadReader reader) => new((TubeError)reader.U16(), reader.Str());
}

/// <summary>An <c>Ok</c> with nothing in it (written "-" in docs/protocol.md).</summary>
internal readonly record struct Empty : IPayload<Empty>
{
    public void Write(PayloadWriter writer)
    {
    }

    public static Empty Read(ref PayloadReader reader) => default;
}
