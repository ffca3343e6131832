using System.Buffers.Binary;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using FaaSTube.Channels.Protocol;

namespace FaaSTube.Channels.Remote;

/// <summary>What a UCX tagged message of a remote session carries (the tag's top four bits).</summary>
internal enum RemoteKind : ulong
{
    /// <summary>Node to client, first: the session's tag bits and a random challenge.</summary>
    Challenge = 1,

    /// <summary>Client to node: the Hello frame and its proof.</summary>
    Hello = 2,

    /// <summary>Client to node: a request frame, as on the socket.</summary>
    Request = 3,

    /// <summary>Node to client: an Ok or Error frame, as on the socket.</summary>
    Answer = 4,

    /// <summary>Client to node: a PutPart's bytes, received straight into the node's window.</summary>
    PutData = 5,

    /// <summary>Node to client: a GetToHost part's bytes, sent from the node's window.</summary>
    GetData = 6,
}

/// <summary>
/// The remote transport's wire (docs/protocol.md, Remote clients). Every message is a UCX tagged
/// message whose 64-bit tag is <c>kind (4 bits) | session (40 bits) | page (20 bits)</c>: each
/// remote session has a UCX worker of its own on the node, so only its client's messages reach its
/// receives; the session's 40 random bits (told in the challenge) stay in the tags as a check; data
/// messages add the window page they start at (parts start on page boundaries; a window is at most 2^20 pages).
/// Control messages are the socket's frames (<see cref="Frames"/>): the same records, the same checks.
/// </summary>
internal static class RemoteWire
{
    public const int PageBytes = 4096;
    public const int NonceBytes = 32;
    public const int ProofBytes = 32;
    public const ulong SessionMask = (1UL << 40) - 1;

    /// <summary>Matches the kind and the session, whatever the page.</summary>
    public const ulong KindAndSession = ~((1UL << 20) - 1);

    /// <summary>Matches the session only, whatever the kind and page (draining a session's strays).</summary>
    public const ulong SessionOnly = SessionMask << 20;

    /// <summary>Matches the kind only (the client's first receive, before it knows its session).</summary>
    public const ulong KindOnly = 0xFUL << 60;

    public static ulong Tag(RemoteKind kind, ulong session, int windowOffset = 0) =>
        ((ulong)kind << 60) | ((session & SessionMask) << 20) | ((ulong)(windowOffset / PageBytes) & 0xFFFFF);

    /// <summary>40 random bits, never 0.</summary>
    public static ulong NewSession()
    {
        Span<byte> bytes = stackalloc byte[8];
        ulong session;
        do
        {
            RandomNumberGenerator.Fill(bytes);
            session = BinaryPrimitives.ReadUInt64LittleEndian(bytes) & SessionMask;
        }
        while (session == 0);
        return session;
    }

    /// <summary>The challenge: <c>u16 version, i64 session, bytes nonce</c>.</summary>
    public static byte[] Challenge(ulong session, ReadOnlySpan<byte> nonce) =>
        new PayloadWriter().U16(Frames.Version).I64((long)session).Bytes(nonce).Memory.ToArray();

    public static (ushort Version, ulong Session, byte[] Nonce) ReadChallenge(ReadOnlySpan<byte> message)
    {
        var reader = new PayloadReader(message);
        var challenge = (reader.U16(), (ulong)reader.I64(), reader.Bytes());
        if (!reader.AtEnd || challenge.Item3.Length != NonceBytes || (challenge.Item2 & ~SessionMask) != 0 || challenge.Item2 == 0)
        {
            throw new InvalidDataException("The node's challenge is malformed.");
        }

        return challenge;
    }

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
