using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using Microsoft.Extensions.Logging;

namespace FaaSTube.Channels.Remote;

/// <summary>
/// What the network listener (<see cref="RemoteListener"/>) and its sessions need of whoever serves
/// them: the node itself (<see cref="InProcessRemoteHost"/>, <see cref="NetworkIsolation.InProcess"/>), or the
/// network gateway, a process of its own that relays each session to the node over its Unix socket
/// (<see cref="Gateway.GatewayHost"/>, <see cref="NetworkIsolation.Process"/>).
/// </summary>
internal interface IRemoteHost
{
    /// <summary>The node's options (the gateway's copy of the ones the network path reads).</summary>
    TubeNodeOptions Settings { get; }

    ILogger Logger { get; }

    /// <summary>Logs a failure that is nobody's fault but the node's and returns the message a client gets.</summary>
    string InternalError(string operation, long session, Exception exception);

    /// <summary>A session for one accepted connection, not yet open (its Hello decides).</summary>
    IRemoteBackend NewSession();
}

/// <summary>
/// One remote client's session as <see cref="RemoteSession"/> drives it: a node session in this
/// process, or a relay over a local connection to the node. Requests are frames (type, payload with
/// its trace context); a PutPart's bytes are in <see cref="Window"/> before it is executed, a
/// GetToHost part's bytes are there once it returns.
/// </summary>
internal interface IRemoteBackend
{
    /// <summary>The session's id in logs (the node's once open).</summary>
    long Id { get; }

    /// <summary>Cancelled when the session ends.</summary>
    CancellationToken Ended { get; }

    /// <summary>Completes once the session has ended and everything it held was given back.</summary>
    Task Completion { get; set; }

    /// <summary>The window the client's parts move through; empty before the session is open.</summary>
    Memory<byte> Window { get; }

    /// <summary>Opens the session for a client that proved it knows <paramref name="hello"/>'s workflow's secret.</summary>
    /// <exception cref="TubeException">Refused, with the code and message the client gets.</exception>
    Task<HelloOk> OpenAsync(Hello hello);

    /// <summary>Executes one request frame; its answer's payload (an empty one for a one-way request that was taken).</summary>
    /// <exception cref="TubeException">Refused, with the code and message the client gets.</exception>
    Task<ReadOnlyMemory<byte>> ExecuteAsync(FrameType type, byte[] payload);

    /// <summary>Takes a request slot (waits while all are taken); <see cref="OperationCanceledException"/> once the session ended.</summary>
    Task EnterAsync();

    /// <summary>Gives a request slot back.</summary>
    void Exit();

    /// <summary>Ends the session from this side.</summary>
    void Abort();

    /// <summary>The connection is over: cancels what runs, closes the transport, waits for every request, gives back what the session held. Once.</summary>
    Task EndAsync(Func<Task> closeTransport);
}
