using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace FaaSTube.Kernels;

/// <summary>
/// The checksum FaaSTube uses to verify data on every path. It is order-independent over
/// 8-byte words (a sum of mixed, position-tagged words), so a GPU computes it in parallel
/// with the same result as this CPU version: <c>Finish(Σ Mix(word[i] ^ i·φ), length)</c>, with the
/// last word zero-padded.
/// </summary>
public static class DataChecksum
{
    internal const ulong Golden = 0x9E3779B97F4A7C15UL;

    /// <summary>The checksum of <paramref name="data"/>.</summary>
    public static ulong Compute(ReadOnlySpan<byte> data) => Finish(PartialSum(data, 0), data.Length);

    /// <summary>The unfinished sum over <paramref name="data"/> whose first word has index <paramref name="firstWord"/>.</summary>
    internal static ulong PartialSum(ReadOnlySpan<byte> data, long firstWord)
    {
        ulong sum = 0;
        ulong index = (ulong)firstWord;
        int full = data.Length & ~7;
        for (int off = 0; off < full; off += 8, index++)
        {
            sum += Mix(BinaryPrimitives.ReadUInt64LittleEndian(data.Slice(off, 8)) ^ (index * Golden));
        }

        if (full < data.Length)
        {
            Span<byte> tail = stackalloc byte[8];
            tail.Clear();
            data[full..].CopyTo(tail);
            sum += Mix(BinaryPrimitives.ReadUInt64LittleEndian(tail) ^ (index * Golden));
        }

        return sum;
    }

    /// <summary>Turns the sum of all words into the checksum of <paramref name="length"/> bytes.</summary>
    internal static ulong Finish(ulong sum, long length) => Mix(sum ^ (ulong)length);

    /// <summary>SplitMix64's finaliser (with its increment): a cheap, well-mixed 64-bit bijection.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong Mix(ulong z)
    {
        z += Golden;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
