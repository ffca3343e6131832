using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;

namespace FaaSTube.Channels.Client;

/// <summary>
/// How a <see cref="TubeClient"/> reaches its session on the node: frames over the node's socket
/// (<see cref="FramedConnection"/>) or direct calls into a node in the same process
/// (<see cref="DirectConnection"/>). Same requests, same answers, same errors.
/// </summary>
internal interface INodeConnection : IAsyncDisposable
{
    /// <summary>One request and its answer; the node's refusal as <see cref="TubeException"/>, a lost node as <see cref="TubeNodeUnavailableException"/>.</summary>
    Task<TReply> CallAsync<TReply>(IRequest<TReply> request, CancellationToken cancellationToken)
        where TReply : IPayload<TReply>;

    /// <summary>
    /// A one-way request (Publish, Release): returns once it is on its way, in the connection's order;
    /// no answer comes unless it fails, and then the failure goes to the connection's one-way error handler.
    /// </summary>
    ValueTask PostAsync(IRequest<Empty> request);

    /// <summary>True once the connection is over (the node went away, or it was closed): every call fails from then on.</summary>
    bool IsLost { get; }

    /// <summary>Any request as raw bytes (tests forge requests with it); the <c>Ok</c> payload. One-way types return once they are applied.</summary>
    Task<byte[]> CallRawAsync(FrameType type, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken);
}
