namespace FaaSTube.Channels.Protocol;

/// <summary>A request type's name in telemetry: lower snake case (<c>PutBegin</c> is <c>put_begin</c>), made once per type.</summary>
internal static class RequestNames
{
    private static readonly string[] Names = Enumerable.Range(0, 256).Select(t => Snake(((FrameType)t).ToString())).ToArray();

    private static readonly string[] SpanNames = Names.Select(n => "faastube." + n).ToArray();

    /// <summary>The <c>faastube.operation.name</c> of <paramref name="type"/> (an unknown type is its number).</summary>
    public static string Of(FrameType type) => Names[(byte)type];

    /// <summary>The name of the node's span of a request of <paramref name="type"/>: <c>faastube.</c> and its operation name.</summary>
    public static string SpanOf(FrameType type) => SpanNames[(byte)type];

    private static string Snake(string name) =>
        string.Concat(name.Select((c, i) => char.IsUpper(c) ? (i == 0 ? "" : "_") + char.ToLowerInvariant(c) : c.ToString()));
}
