using System.Buffers;
using System.Runtime.InteropServices;

namespace FaaSTube.Memory;

/// <summary>Pageable native memory (never moved by the GC) exposed as <see cref="Memory{T}"/>; frees itself on dispose.</summary>
internal sealed unsafe class NativeMemoryManager : MemoryManager<byte>
{
    private byte* _pointer;
    private readonly int _length;

    public NativeMemoryManager(int length)
    {
        _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)length, 4096);
        _length = length;
    }

    public override Span<byte> GetSpan()
    {
        ObjectDisposedException.ThrowIf(_pointer == null, this);
        return new Span<byte>(_pointer, _length);
    }

    public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
        if (_pointer != null)
        {
            NativeMemory.AlignedFree(_pointer);
            _pointer = null;
        }
    }
}
