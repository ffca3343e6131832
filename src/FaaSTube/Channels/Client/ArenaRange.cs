using FaaSTube.Channels.Protocol.Messages;

namespace FaaSTube.Channels.Client;

/// <summary>
/// One arena range as the client holds it: the node's number for it, where it lies in its slab, the
/// slab mapping it keeps open, and a bump allocator over it. Pieces are carved front to back and never
/// reused: a piece's space comes back on the node (its release or the range's return), not here, so
/// the client needs to know nothing of a piece after it carved it. Thread-safe.
/// </summary>
internal sealed class ArenaRange(long number, Mapping mapping, ClientMappings.SlabUse slab) : IDisposable
{
    /// <summary>The carve alignment: the pool's (<c>src/FaaSTube/Memory/ExtentAllocator.cs</c>), which the node checks.</summary>
    public const long Alignment = 256;

    private long _next;
    private int _disposed;

    /// <summary>The node's number for the range (this session's).</summary>
    public long Number { get; } = number;

    /// <summary>The GPU it is on.</summary>
    public int Device => mapping.Device;

    /// <summary>Its bytes.</summary>
    public long Length => mapping.Length;

    /// <summary>Bytes carved so far (the bump pointer).</summary>
    public long Used => Interlocked.Read(ref _next);

    /// <summary>The mapping of a piece at <paramref name="offset"/> of the range: the range's slab, no handle (the range keeps the slab mapped).</summary>
    public Mapping PieceAt(long offset, long length) => mapping with { Offset = mapping.Offset + offset, Length = length, Handle = [] };

    /// <summary>Carves <paramref name="bytes"/> (rounded up to <see cref="Alignment"/>) off the front of what is left: its offset in the range, or -1 when it does not fit.</summary>
    public long TryCarve(long bytes)
    {
        long rounded = (bytes + Alignment - 1) & ~(Alignment - 1);
        while (true)
        {
            long at = Interlocked.Read(ref _next);
            if (rounded <= 0 || at > Length - rounded)
            {
                return -1;
            }

            if (Interlocked.CompareExchange(ref _next, at + rounded, at) == at)
            {
                return at;
            }
        }
    }

    /// <summary>Ends the range's use of its slab mapping (its pieces hold uses of their own); once.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            slab.Dispose();
        }
    }
}
