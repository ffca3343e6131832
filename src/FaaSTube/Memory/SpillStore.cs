using System.Buffers;
using FaaSTube.Devices;

namespace FaaSTube.Memory;

/// <summary>
/// Where evicted blocks live until they are restored: host memory up to
/// <see cref="GpuPoolOptions.HostSpillBytes"/> (pageable, or pinned for faster restores), then files
/// up to <see cref="GpuPoolOptions.MaxSpillFileBytes"/>. Nothing is dropped here: when both are full,
/// <see cref="TryReserve"/> says so and the pool does not evict (a cached object is then dropped by its
/// owner instead: <see cref="CacheValue.Drop"/>).
/// </summary>
internal sealed class SpillStore : IDisposable
{
    internal const int PieceBytes = 1 << 30;
    private readonly GpuDevice _device;
    private readonly GpuPoolOptions _options;
    private readonly Lazy<string> _directory;
    private long _hostBytes;
    private long _fileBytes;

    public SpillStore(GpuDevice device, GpuPoolOptions options)
    {
        _device = device;
        _options = options;
        _directory = new Lazy<string>(() => Directory.CreateDirectory(
            options.SpillDirectory ?? Path.Combine(Path.GetTempPath(), $"faastube-spill.{Environment.ProcessId}.{Guid.NewGuid():N}")).FullName);
    }

    public long HostBytes => Interlocked.Read(ref _hostBytes);

    public long FileBytes => Interlocked.Read(ref _fileBytes);

    /// <summary>Room for <paramref name="bytes"/>: host memory first, then a file; null when both are full.</summary>
    public SpillEntry? TryReserve(long bytes)
    {
        if (Interlocked.Add(ref _hostBytes, bytes) <= _options.HostSpillBytes)
        {
            try
            {
                return new HostSpillEntry(this, bytes, _options.PinnedSpill ? _device : null);
            }
            catch
            {
                Interlocked.Add(ref _hostBytes, -bytes);
                throw;
            }
        }

        Interlocked.Add(ref _hostBytes, -bytes);
        if (Interlocked.Add(ref _fileBytes, bytes) <= _options.MaxSpillFileBytes)
        {
            return new FileSpillEntry(this, bytes, Path.Combine(_directory.Value, $"{Guid.NewGuid():N}.spill"));
        }

        Interlocked.Add(ref _fileBytes, -bytes);
        return null;
    }

    public void Dispose()
    {
        if (_directory.IsValueCreated && _options.SpillDirectory is null)
        {
            try
            {
                Directory.Delete(_directory.Value, recursive: true);
            }
            catch (IOException)
            {
                // Entries still open are deleted by their own dispose.
            }
        }
    }

    /// <summary>Evicted bytes of one block.</summary>
    internal abstract class SpillEntry(SpillStore store, long length) : IDisposable
    {
        private int _disposed;

        public long Length { get; } = length;

        public abstract bool IsFile { get; }

        protected SpillStore Store { get; } = store;

        public abstract Task WriteFromDeviceAsync(GpuStream stream, DeviceMemory source, CancellationToken cancellationToken);

        public abstract Task ReadToDeviceAsync(GpuStream stream, DeviceMemory destination, CancellationToken cancellationToken);

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                try
                {
                    Free();
                }
                finally
                {
                    Interlocked.Add(ref IsFile ? ref Store._fileBytes : ref Store._hostBytes, -Length);
                }
            }
        }

        protected abstract void Free();
    }

    /// <summary>Host memory in pieces of at most 1 GiB (a <see cref="Memory{T}"/>'s limit).</summary>
    private sealed class HostSpillEntry : SpillEntry
    {
        private readonly MemoryManager<byte>[] _pieces;

        public HostSpillEntry(SpillStore store, long length, GpuDevice? pinnedOn)
            : base(store, length)
        {
            int count = (int)((length + PieceBytes - 1) / PieceBytes);
            _pieces = new MemoryManager<byte>[count];
            for (int i = 0; i < count; i++)
            {
                int piece = (int)Math.Min(PieceBytes, length - (long)i * PieceBytes);
                _pieces[i] = pinnedOn is null ? new NativeMemoryManager(piece) : pinnedOn.AllocatePinned(piece);
            }
        }

        public override bool IsFile => false;

        public override async Task WriteFromDeviceAsync(GpuStream stream, DeviceMemory source, CancellationToken cancellationToken)
        {
            for (int i = 0; i < _pieces.Length; i++)
            {
                var memory = _pieces[i].Memory;
                await stream.CopyAsync(source.Slice((long)i * PieceBytes, memory.Length), memory, cancellationToken).ConfigureAwait(false);
            }
        }

        public override async Task ReadToDeviceAsync(GpuStream stream, DeviceMemory destination, CancellationToken cancellationToken)
        {
            for (int i = 0; i < _pieces.Length; i++)
            {
                var memory = _pieces[i].Memory;
                await stream.CopyAsync(memory, destination.Slice((long)i * PieceBytes, memory.Length), cancellationToken).ConfigureAwait(false);
            }
        }

        protected override void Free()
        {
            foreach (IDisposable piece in _pieces)
            {
                piece.Dispose();
            }
        }
    }

    /// <summary>A file, written and read through a bounce buffer of at most 16 MiB.</summary>
    private sealed class FileSpillEntry(SpillStore store, long length, string path) : SpillEntry(store, length)
    {
        private const int BounceBytes = 16 << 20;

        public override bool IsFile => true;

        public override async Task WriteFromDeviceAsync(GpuStream stream, DeviceMemory source, CancellationToken cancellationToken)
        {
            var bounce = GC.AllocateUninitializedArray<byte>((int)Math.Min(BounceBytes, Length), pinned: true);
            using var file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, FileOptions.None, Length);
            for (long done = 0; done < Length; done += bounce.Length)
            {
                int n = (int)Math.Min(bounce.Length, Length - done);
                await stream.CopyAsync(source.Slice(done, n), bounce.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
                await RandomAccess.WriteAsync(file, bounce.AsMemory(0, n), done, cancellationToken).ConfigureAwait(false);
            }
        }

        public override async Task ReadToDeviceAsync(GpuStream stream, DeviceMemory destination, CancellationToken cancellationToken)
        {
            var bounce = GC.AllocateUninitializedArray<byte>((int)Math.Min(BounceBytes, Length), pinned: true);
            using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
            for (long done = 0; done < Length; done += bounce.Length)
            {
                int n = (int)Math.Min(bounce.Length, Length - done);
                int read = await RandomAccess.ReadAsync(file, bounce.AsMemory(0, n), done, cancellationToken).ConfigureAwait(false);
                if (read != n)
                {
                    throw new IOException($"The spill file {path} is shorter than the {Length} bytes written to it.");
                }

                await stream.CopyAsync(bounce.AsMemory(0, n), destination.Slice(done, n), cancellationToken).ConfigureAwait(false);
            }
        }

        protected override void Free()
        {
            try
            {
                File.Delete(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Gone already (a temp cleaner took the folder): nothing left to free.
            }
        }
    }
}
