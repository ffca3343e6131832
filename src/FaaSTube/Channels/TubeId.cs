using System.Buffers.Binary;
using System.Security.Cryptography;

namespace FaaSTube.Channels;

/// <summary>
/// The id of data in a node: 112 random bits (unguessable) and the number of the node that made it
/// (its <see cref="Home"/>, the top 16 bits of <see cref="Low"/>), scoped to the workflow that made it.
/// Text form: 32 hex digits.
/// </summary>
public readonly record struct TubeId(ulong High, ulong Low)
{
    /// <summary>Bytes in the binary form.</summary>
    public const int Size = 16;

    private const int HomeShift = 48;
    private const ulong RandomLow = (1UL << HomeShift) - 1;

    /// <summary>
    /// The number (<see cref="TubeNodeOptions.NodeNumber"/>) of the node that made this id, where its
    /// data lives first; 0: not known (a node without a number, or an id a client drew for an arena
    /// carve). A node asked for an id it does not hold fetches it from this peer (docs/architecture.md, Node to node).
    /// </summary>
    public int Home => (int)(Low >> HomeShift);

    /// <summary>A fresh random id whose <see cref="Home"/> is unknown (0).</summary>
    public static TubeId NewId() => NewId(0);

    /// <summary>A fresh random id made by node <paramref name="home"/> (0: unknown).</summary>
    internal static TubeId NewId(int home)
    {
        Span<byte> bytes = stackalloc byte[Size];
        RandomNumberGenerator.Fill(bytes);
        var random = Read(bytes);
        return new(random.High, (random.Low & RandomLow) | ((ulong)(ushort)home << HomeShift));
    }

    /// <summary>Parses the 32-hex-digit form.</summary>
    /// <param name="text">The text.</param>
    public static TubeId Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length != 2 * Size)
        {
            throw new FormatException($"A tube id has {2 * Size} hex digits.");
        }

        return Read(Convert.FromHexString(text));
    }

    /// <summary>
    /// The id of a client's arena carve: its high half holds the session (top 32 bits) and the carve's
    /// sequence number (low 32 bits), its low half 48 random bits and an unknown <see cref="Home"/> (0). The node accepts a carve only
    /// under an id of the carving session with a sequence above its last, and a Get of such an id that
    /// is not registered yet waits while the sequence is ahead of that session's carves.
    /// </summary>
    internal static TubeId ForArena(long session, uint sequence)
    {
        Span<byte> bytes = stackalloc byte[8];
        RandomNumberGenerator.Fill(bytes);
        return new(((ulong)(uint)session << 32) | sequence, BinaryPrimitives.ReadUInt64BigEndian(bytes) & RandomLow);
    }

    /// <summary>The session and sequence an arena id names (meaningful only for ids made by <see cref="ForArena"/>).</summary>
    internal (long Session, uint Sequence) ArenaParts => ((long)(High >> 32), (uint)High);

    internal static TubeId Read(ReadOnlySpan<byte> bytes) =>
        new(BinaryPrimitives.ReadUInt64BigEndian(bytes), BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]));

    internal void Write(Span<byte> bytes)
    {
        BinaryPrimitives.WriteUInt64BigEndian(bytes, High);
        BinaryPrimitives.WriteUInt64BigEndian(bytes[8..], Low);
    }

    /// <inheritdoc/>
    public override string ToString() => $"{High:x16}{Low:x16}";
}
