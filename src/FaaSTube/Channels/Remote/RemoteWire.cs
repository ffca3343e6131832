using System.Buffers.Binary;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using FaaSTube.Channels.Protocol;

namespace FaaSTube.Channels.Remote;

/// <summary>The active-message ids of the remote transport (docs/protocol.md, Remote clients).</summary>
internal enum RemoteMessage : uint
{
    /// <summary>Node to client, first: the challenge (header only).</summary>
    Challenge = 1,

    /// <summary>Client to node: the Hello frame and its proof (header only).</summary>
    Hello = 2,

    /// <summary>Client to node: a request frame as the header; a PutPart carries its bytes as the data.</summary>
    Request = 3,

    /// <summary>Node to client: an Ok or Error frame as the header; a GetToHost part's Ok carries its bytes as the data.</summary>
    Answer = 4,

    /// <summary>Node to client, when the client has been silent for a third of <see cref="TubeNodeOptions.RemoteIdleTimeout"/> (empty).</summary>
    Ping = 5,

    /// <summary>Client to node: the answer to a <see cref="Ping"/> (empty; no credit, no request id).</summary>
    Pong = 6,
}

/// <summary>
/// The remote transport's wire (docs/protocol.md, Remote clients). Every message is a UCX active
/// message: its header is one of the socket's frames (<see cref="Frames"/>: the same records, the
/// same checks), its data the bytes of a PutPart (client to node) or of a GetToHost part's answer
/// (node to client). The client sends with UCP_AM_SEND_FLAG_REPLY, so the node's handler knows
/// which endpoint each message came on and drops any that is not its session's.
/// </summary>
internal static class RemoteWire
{
    public const int NonceBytes = 32;
    public const int ProofBytes = 32;

    /// <summary>The most a Hello message may be (its header; a Hello has no data): names, window size, the proof.</summary>
    public const int MaxHelloBytes = 4096 + 3 * Frames.MaxNameBytes;

    /// <summary>The most a remote request's frame may be (its header): every request is a trace context, at most two names and numbers; the bytes of a PutPart travel as its data. Below UCX's largest active-message header over TCP (8 KiB).</summary>
    public const int MaxRequestBytes = 4 << 10;

    /// <summary>The challenge: <c>u16 version, bytes nonce, i32 credits, i32 max request bytes</c>.</summary>
    public static byte[] Challenge(ReadOnlySpan<byte> nonce, int credits, int maxRequestBytes) =>
        new PayloadWriter().U16(Frames.Version).Bytes(nonce).I32(credits).I32(maxRequestBytes).Memory.ToArray();

    public static (ushort Version, byte[] Nonce, int Credits, int MaxRequestBytes) ReadChallenge(ReadOnlySpan<byte> message)
    {
        var reader = new PayloadReader(message);
        ushort version = reader.U16();
        if (version != Frames.Version)
        {
            return (version, [], 0, 0); // the rest may be laid out otherwise: the caller reports the version
        }

        var challenge = (version, reader.Bytes(), reader.I32(), reader.I32());
        if (!reader.AtEnd || challenge.Item2.Length != NonceBytes || challenge.Item3 <= 0 || challenge.Item4 <= Frames.HeaderBytes)
        {
            throw new InvalidDataException("The node's challenge is malformed.");
        }

        return challenge;
    }

    /// <summary>How long a connect ticket is good for: its 30-second window and the one before.</summary>
    public const int TicketWindowSeconds = 30;

    /// <summary>
    /// The connect ticket a client's worker sends as its UCX client id with its connection request
    /// (UCP_EP_PARAMS_FLAGS_SEND_CLIENT_ID): 32 random bits, then the first 32 bits of
    /// HMAC-SHA256(secret, "faastube-connect" || random || window), window = Unix time / 30 s. The
    /// listener rejects a request without a valid, unused ticket before any endpoint exists for it.
    /// </summary>
    public static ulong Ticket(ReadOnlySpan<byte> secret, uint random, long window)
    {
        var input = new PayloadWriter();
        input.Bytes("faastube-connect"u8).I32(unchecked((int)random)).I64(window);
        Span<byte> mac = stackalloc byte[32];
        HMACSHA256.HashData(secret, input.Memory.Span, mac);
        return ((ulong)random << 32) | BinaryPrimitives.ReadUInt32BigEndian(mac);
    }

    /// <summary>A new ticket for now (the client's side).</summary>
    public static ulong NewTicket(ReadOnlySpan<byte> secret, TimeProvider clock)
    {
        uint random;
        do
        {
            random = (uint)RandomNumberGenerator.GetInt32(int.MinValue, int.MaxValue);
        }
        while (random == 0);
        return Ticket(secret, random, TicketWindow(clock));
    }

    public static long TicketWindow(TimeProvider clock) => clock.GetUtcNow().ToUnixTimeSeconds() / TicketWindowSeconds;

    /// <summary>HMAC-SHA256(secret, nonce || u32 length + workflow || u32 length + function): names are length-prefixed, so no two pairs make the same input.</summary>
    public static byte[] Proof(ReadOnlySpan<byte> secret, ReadOnlySpan<byte> nonce, string workflow, string function)
    {
        var input = new PayloadWriter();
        input.Bytes(nonce).Bytes(Encoding.UTF8.GetBytes(workflow)).Bytes(Encoding.UTF8.GetBytes(function));
        return HMACSHA256.HashData(secret, input.Memory.Span);
    }

    /// <summary>A frame as <see cref="Frames.Encode"/> wrote it, whole: type, request id, payload; <see cref="InvalidDataException"/> for anything else.</summary>
    public static (FrameType Type, uint RequestId, byte[] Payload) ReadFrame(ReadOnlySpan<byte> message)
    {
        if (message.Length < Frames.HeaderBytes || BinaryPrimitives.ReadUInt32LittleEndian(message) != message.Length - 4)
        {
            throw new InvalidDataException($"A message of {message.Length} bytes is not one whole frame.");
        }

        return ((FrameType)message[4], BinaryPrimitives.ReadUInt32LittleEndian(message[5..]), message[Frames.HeaderBytes..].ToArray());
    }

    /// <summary>Parses <c>ucx://host:port</c> (a client's address) or <c>host:port</c> (a node's listen address).</summary>
    public static async Task<IPEndPoint> ResolveAsync(string address, bool requireScheme, CancellationToken cancellationToken)
    {
        const string Scheme = "ucx://";
        string rest = address;
        if (address.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            rest = address[Scheme.Length..];
        }
        else if (requireScheme)
        {
            throw new ArgumentException($"'{address}' is not a ucx://host:port address.", nameof(address));
        }

        int colon = rest.LastIndexOf(':');
        if (colon <= 0 || !ushort.TryParse(rest[(colon + 1)..].TrimEnd('/'), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out ushort port))
        {
            throw new ArgumentException($"'{address}' has no host:port.", nameof(address));
        }

        string host = rest[..colon].Trim('[', ']');
        if (IPAddress.TryParse(host, out var ip))
        {
            return new IPEndPoint(ip, port);
        }

        var addresses = await Dns.GetHostAddressesAsync(host, cancellationToken).ConfigureAwait(false);
        var chosen = addresses.FirstOrDefault(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork) ?? addresses.FirstOrDefault()
            ?? throw new ArgumentException($"'{host}' has no address.", nameof(address));
        return new IPEndPoint(chosen, port);
    }
}
