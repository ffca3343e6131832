using FaaSTube.Channels.Protocol.Messages;

namespace FaaSTube.Channels.Protocol;

/// <summary>From a frame to its request record: the one place a request's type picks its reader (the socket and in-process raw calls use it alike).</summary>
internal static class Requests
{
    /// <summary>
    /// A request frame's payload after Hello (socket or control ring): its trace context, then the
    /// request; <see cref="InvalidDataException"/> for a malformed trace context or payload.
    /// </summary>
    public static (TraceContext Trace, IRequest Request) DecodeTraced(FrameType type, ReadOnlySpan<byte> payload)
    {
        var reader = new PayloadReader(payload);
        var trace = TraceContext.Read(ref reader);
        return (trace, Decode(type, reader.Rest));
    }

    /// <summary>The request a frame carries; <see cref="TubeException"/> BadRequest for a type that is not a request, <see cref="InvalidDataException"/> for a malformed payload.</summary>
    public static IRequest Decode(FrameType type, ReadOnlySpan<byte> payload) => type switch
    {
        FrameType.PutBegin => Payload.Read<PutBegin>(payload),
        FrameType.PutPart => Payload.Read<PutPart>(payload),
        FrameType.PutCommit => Payload.Read<PutCommit>(payload),
        FrameType.Allocate => Payload.Read<Allocate>(payload),
        FrameType.Publish => Payload.Read<Publish>(payload),
        FrameType.Get => Payload.Read<Get>(payload),
        FrameType.GetToHost => Payload.Read<GetToHost>(payload),
        FrameType.Release => Payload.Read<Release>(payload),
        FrameType.Where => Payload.Read<Where>(payload),
        FrameType.SlabClosed => Payload.Read<SlabClosed>(payload),
        FrameType.Delete => Payload.Read<Delete>(payload),
        FrameType.Sync => Payload.Read<Sync>(payload),
        FrameType.NamedPutBegin => Payload.Read<NamedPutBegin>(payload),
        FrameType.NamedCommit => Payload.Read<NamedCommit>(payload),
        FrameType.NamedGet => Payload.Read<NamedGet>(payload),
        FrameType.NamedWhere => Payload.Read<NamedWhere>(payload),
        FrameType.NamedLoadFailed => Payload.Read<NamedLoadFailed>(payload),
        FrameType.NamedDelete => Payload.Read<NamedDelete>(payload),
        FrameType.ArenaLease => Payload.Read<ArenaLease>(payload),
        FrameType.ArenaCarve => Payload.Read<ArenaCarve>(payload),
        FrameType.ArenaReturn => Payload.Read<ArenaReturn>(payload),
        FrameType.NamedAllocate => Payload.Read<NamedAllocate>(payload),
        FrameType.PutWhole => Payload.Read<PutWhole>(payload),
        FrameType.GetWhole => Payload.Read<GetWhole>(payload),
        _ => throw UnknownType(type),
    };

    /// <summary>
    /// The window range a request has the node copy out of (to the GPU: PutPart, PutWhole, whose bytes
    /// a remote client sends with it) or into (to the host: GetToHost, GetWhole, whose answer brings
    /// them) until it answers; null for every other request. The one list of such requests.
    /// </summary>
    public static (int Offset, int Length, bool ToHost)? WindowRangeOf(IRequest request) => request switch
    {
        PutPart part => (part.WindowOffset, part.Length, false),
        PutWhole whole => (whole.WindowOffset, whole.Length, false),
        GetToHost part => (part.WindowOffset, part.Length, true),
        GetWhole whole => (whole.WindowOffset, whole.MaxLength, true),
        _ => null,
    };

    /// <summary>Whether requests of <paramref name="type"/> name a window range (<see cref="WindowRangeOf"/>).</summary>
    public static bool NamesWindowRange(FrameType type) => type is FrameType.PutPart or FrameType.PutWhole or FrameType.GetToHost or FrameType.GetWhole;

    /// <summary>Whether a remote client sends the bytes of requests of <paramref name="type"/> with them (the window range's, to the GPU).</summary>
    public static bool CarriesBytes(FrameType type) => type is FrameType.PutPart or FrameType.PutWhole;

    /// <summary>The refusal of a frame type that is no request (the node's, and the network gateway's before it relays one).</summary>
    public static TubeException UnknownType(FrameType type) => new(TubeError.BadRequest, $"Unknown request type {(byte)type}.");
}
