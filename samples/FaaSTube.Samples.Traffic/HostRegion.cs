using System.Buffers;
using System.IO.MemoryMappedFiles;
using FaaSTube.Devices;

namespace FaaSTube.Samples.Traffic;

/// <summary>
/// A shared-memory file (in /dev/shm) mapped into this process, as host-memory platforms pass
/// data between functions. Its bytes are pageable until <see cref="Register"/> page-locks them for
/// the GPU (<see cref="GpuDevice.RegisterHostMemory"/>): then copies from and to <see cref="Memory"/>
/// are direct DMA. No managed array is involved either way.
/// </summary>
internal sealed unsafe class HostRegion : MemoryManager<byte>
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _pointer;
    private readonly bool _owner;
    private PinnedBuffer? _registration;

    private HostRegion(string path, MemoryMappedFile file, int length, bool owner)
    {
        Path = path;
        Length = length;
        _file = file;
        _owner = owner;
        _view = file.CreateViewAccessor(0, length);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _pointer = p + _view.PointerOffset;
    }

    /// <summary>The file's path: what a stage passes on to the next.</summary>
    public string Path { get; }

    public int Length { get; }

    /// <summary>The bytes: through the registration once registered (so copies see pinned memory).</summary>
    public new Memory<byte> Memory => _registration?.Memory ?? CreateMemory(Length);

    /// <summary>Creates a new shared-memory file of <paramref name="length"/> bytes (deleted on dispose when <paramref name="deleteOnDispose"/>, else by <see cref="Delete"/>).</summary>
    public static HostRegion Create(long length, bool deleteOnDispose)
    {
        string dir = Directory.Exists("/dev/shm") ? "/dev/shm" : System.IO.Path.GetTempPath();
        string path = System.IO.Path.Combine(dir, $"faastube-sample.{Environment.ProcessId}.{Guid.NewGuid():N}");
        var file = MemoryMappedFile.CreateFromFile(path, FileMode.CreateNew, null, length, MemoryMappedFileAccess.ReadWrite);
        return new HostRegion(path, file, checked((int)length), owner: deleteOnDispose);
    }

    /// <summary>Maps another process's shared-memory file.</summary>
    public static HostRegion Open(string path)
    {
        long length = new FileInfo(path).Length;
        var file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.ReadWrite);
        return new HostRegion(path, file, checked((int)length), owner: false);
    }

    /// <summary>Page-locks the mapping for <paramref name="device"/>'s copies (once; kept until disposed).</summary>
    public HostRegion Register(GpuDevice device)
    {
        _registration ??= device.RegisterHostMemory((nint)_pointer, Length);
        return this;
    }

    public override Span<byte> GetSpan() => new(_pointer, Length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
        ((IDisposable?)_registration)?.Dispose(); // unregistered first (after the last copy that used it), then unmapped
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
        if (_owner)
        {
            Delete(Path);
        }
    }

    /// <summary>Deletes a shared-memory file (its mappings stay valid until unmapped).</summary>
    public static void Delete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Already gone.
        }
    }

    public void Dispose() => ((IDisposable)this).Dispose();
}
