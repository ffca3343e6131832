using System.Buffers.Binary;
using System.Security.Cryptography;

namespace FaaSTube.Channels;

/// <summary>
/// The id of data in a node: 128 random bits (unguessable), scoped to the workflow that made it.
/// Text form: 32 hex digits.
/// </summary>
public readonly record struct TubeId(ulong High, ulong Low)
{
    /// <summary>Bytes in the binary form.</summary>
    public const int Size = 16;

    /// <summary>A fresh random id.</summary>
    public static TubeId NewId()
    {
        Span<byte> bytes = stackalloc byte[Size];
        RandomNumberGenerator.Fill(bytes);
        return Read(bytes);
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
