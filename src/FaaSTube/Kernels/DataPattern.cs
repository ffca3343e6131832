using System.Buffers.Binary;

namespace FaaSTube.Kernels;

/// <summary>
/// A seeded pseudo-random byte pattern that the GPU fill kernel writes and this CPU version
/// reproduces: word <c>i</c> (8 bytes, little-endian) is <c>Mix(seed + i)</c>.
/// </summary>
public static class DataPattern
{
    /// <summary>Fills <paramref name="destination"/> with the pattern of <paramref name="seed"/>.</summary>
    public static void Fill(Span<byte> destination, ulong seed) => Fill(destination, seed, 0);

    /// <summary>Fills <paramref name="destination"/>, whose first byte is word <paramref name="firstWord"/> of the pattern.</summary>
    internal static void Fill(Span<byte> destination, ulong seed, long firstWord)
    {
        ulong index = (ulong)firstWord;
        int full = destination.Length & ~7;
        for (int off = 0; off < full; off += 8, index++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(destination.Slice(off, 8), DataChecksum.Mix(seed + index));
        }

        if (full < destination.Length)
        {
            Span<byte> tail = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(tail, DataChecksum.Mix(seed + index));
            tail[..(destination.Length - full)].CopyTo(destination[full..]);
        }
    }
}
