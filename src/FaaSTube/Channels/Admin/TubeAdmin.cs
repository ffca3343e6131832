using System.Globalization;
using System.Net.Sockets;
using System.Text.Json;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Channels.Transport;

namespace FaaSTube.Channels.Admin;

/// <summary>
/// Asks a running node what it holds and does (the admin Status request, docs/protocol.md): what
/// <c>faastube status</c> and <c>faastube top</c> show. A connection of its own, one question, no
/// window and no workflow; the node answers only its own user and <see cref="TubeNodeOptions.AdminUids"/>.
/// </summary>
internal static class TubeAdmin
{
    /// <summary>The largest status answer read (the node's caps keep it far below).</summary>
    private const int MaxAnswerBytes = 16 << 20;

    /// <summary>The node's status now.</summary>
    /// <param name="socketPath">The node's socket; null: <see cref="TubeNodeOptions.DefaultSocketPath"/>.</param>
    /// <param name="limit">The most sessions, workflows, objects and transfers to list each (the node lists at most 1,000 each and says how many more there are).</param>
    /// <param name="timeout">How long the node has to answer (default 5 s).</param>
    /// <param name="cancellationToken">Cancels the question.</param>
    /// <exception cref="TubeNodeUnavailableException">No node answers on the socket, it runs as another user than this process's (or root), or it did not answer in time.</exception>
    /// <exception cref="TubeException">The node refused: <see cref="TubeError.AccessDenied"/> for a user that is not the node's own or an admin uid.</exception>
    public static async Task<NodeStatus> GetStatusAsync(string? socketPath = null, int limit = 100, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var json = await GetStatusJsonAsync(socketPath, limit, timeout, cancellationToken).ConfigureAwait(false);
        return Parse(json);
    }

    /// <summary>Reads a status document as the node sends it (or as <see cref="ToJson"/> wrote it).</summary>
    /// <param name="utf8Json">The JSON.</param>
    /// <exception cref="JsonException">It is not a status document.</exception>
    public static NodeStatus Parse(ReadOnlySpan<byte> utf8Json) =>
        JsonSerializer.Deserialize(utf8Json, NodeStatusJson.Default.NodeStatus) ?? throw new JsonException("The status document is null.");

    /// <summary>A status as indented JSON, with the documented field names (<c>faastube status --json</c>).</summary>
    /// <param name="status">The status.</param>
    public static string ToJson(NodeStatus status) => JsonSerializer.Serialize(status, NodeStatusJson.Default.NodeStatus);

    private static async Task<byte[]> GetStatusJsonAsync(string? socketPath, int limit, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        socketPath ??= TubeNodeOptions.DefaultSocketPath;
        using var patience = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        patience.CancelAfter(timeout ?? TimeSpan.FromSeconds(5));
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), patience.Token).ConfigureAwait(false);

            // The question names no workflow, but the answer is only believed from the node's user (as TubeClient checks).
            uint nodeUid = UnixRights.PeerCredentials(socket).Uid;
            uint self = FaaSTube.Native.Interop.Libc.getuid();
            if (nodeUid != self && nodeUid != 0)
            {
                throw new TubeNodeUnavailableException($"The process on {socketPath} runs as user {nodeUid.ToString(CultureInfo.InvariantCulture)}, not as this user or root.");
            }

            var frame = Frames.Encode(FrameType.Status, 1, Payload.Writer(new Status(Frames.Version, limit)).Memory.Span);
            await socket.SendAsync(frame, SocketFlags.None, patience.Token).ConfigureAwait(false);
            var answer = await UnixRights.ReceiveAsync(socket, MaxAnswerBytes, patience.Token).ConfigureAwait(false)
                ?? throw new TubeNodeUnavailableException($"The node on {socketPath} closed the connection without an answer.");
            answer.Descriptors.ForEach(d => d.Dispose());
            var type = (FrameType)answer.Frame[0];
            var payload = answer.Frame.AsSpan(Frames.HeaderBytes - 4);
            return type switch
            {
                FrameType.Ok => Payload.Read<StatusOk>(payload).Json,
                FrameType.Error when Payload.Read<Error>(payload) is var error => throw new TubeException(error.Code, error.Message),
                _ => throw new TubeNodeUnavailableException($"The node on {socketPath} answered with frame type {(byte)type}."),
            };
        }
        catch (SocketException e)
        {
            throw new TubeNodeUnavailableException($"No FaaSTube node answers on {socketPath}.", e);
        }
        catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TubeNodeUnavailableException($"The node on {socketPath} did not answer within {(timeout ?? TimeSpan.FromSeconds(5)).TotalSeconds:0.#} s.", e);
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            throw new TubeNodeUnavailableException($"The connection to the node on {socketPath} failed: {e.Message}", e);
        }
    }
}
