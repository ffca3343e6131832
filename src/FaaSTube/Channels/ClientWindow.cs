using System.Buffers;
using FaaSTube.Devices.Simulated;

namespace FaaSTube.Channels;

/// <summary>
/// The client's shared-memory window: a file in /dev/shm that the node maps and registers (pins)
/// once, so host data crosses between the processes by DMA to and from it, never over the socket.
/// Two halves: the client fills one while the node moves the other.
/// </summary>
internal sealed unsafe class ClientWindow : MemoryManager<byte>
{
    private readonly SharedMemoryFile _file;

    public ClientWindow(int bytes)
    {
        Name = $"faastube-win.{Environment.ProcessId}.{Guid.NewGuid():N}";
        _file = SharedMemoryFile.Create(Path.Combine(SharedMemoryFile.DefaultDirectory, Name), bytes, null);
        Length = bytes;
        HalfBytes = bytes / 2 & ~4095;
    }

    public string Name { get; }

    public int Length { get; }

    /// <summary>Bytes per half (page-aligned).</summary>
    public int HalfBytes { get; }

    public Memory<byte> Half(int index) => Memory.Slice(index * HalfBytes, HalfBytes);

    public override Span<byte> GetSpan() => new(_file.Pointer, Length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(_file.Pointer + elementIndex);

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing) => _file.Dispose();
}
