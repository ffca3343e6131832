using System.Globalization;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using FaaSTube.Native;

namespace FaaSTube.Platform;

/// <summary>
/// A named file in shared memory (<c>/dev/shm</c>), a platform facility (the simulated GPU's device
/// memory is made of them: <c>src/FaaSTube/Devices/Simulated/SimulatedGpuDevice.cs</c>), mapped with
/// <see cref="MemoryMappedFile.CreateFromFile(string, FileMode, string?, long)"/> (.NET has no named maps on
/// Linux), so another process that opens the same file sees the same bytes. The file is fully
/// preallocated, so touching it never faults for lack of space. Files are named
/// <c>faastube-sim.{pid}.{id}</c>: the owner deletes
/// its files when they are freed, and <see cref="SweepDeadOwners"/> deletes the files of owners that
/// died (killed processes cannot clean up after themselves).
/// </summary>
internal sealed unsafe class SharedMemoryFile : SafeHandle
{
    private const string Prefix = "faastube-sim.";
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly Action<long>? _onFreed;

    private SharedMemoryFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, long length, bool owner, Action<long>? onFreed)
        : base(0, ownsHandle: true)
    {
        Path = path;
        _map = map;
        _view = view;
        Length = length;
        IsOwner = owner;
        _onFreed = onFreed;
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        SetHandle((nint)(pointer + view.PointerOffset));
    }

    public string Path { get; }

    public long Length { get; }

    public bool IsOwner { get; }

    public byte* Pointer => (byte*)handle;

    public override bool IsInvalid => handle == 0;

    public static string DefaultDirectory => Directory.Exists("/dev/shm") ? "/dev/shm" : System.IO.Path.GetTempPath();

    /// <summary>The file that holds allocation <paramref name="id"/> of process <paramref name="pid"/>.</summary>
    public static string PathOf(string directory, int pid, Guid id) =>
        System.IO.Path.Combine(directory, $"{Prefix}{pid.ToString(CultureInfo.InvariantCulture)}.{id:N}");

    /// <summary>Creates and maps a new zeroed file of <paramref name="length"/> bytes.</summary>
    /// <exception cref="IOException">The file cannot be made; <see cref="IsOutOfSpace"/> says whether for lack of space.</exception>
    public static SharedMemoryFile Create(string path, long length, Action<long>? onFreed)
    {
        var stream = new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.ReadWrite,
            Share = FileShare.ReadWrite | FileShare.Delete,
            PreallocationSize = length,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        });

        try
        {
            stream.SetLength(length);
            var map = MemoryMappedFile.CreateFromFile(stream, null, length, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
            var view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.ReadWrite);
            return new SharedMemoryFile(path, map, view, length, owner: true, onFreed);
        }
        catch
        {
            stream.Dispose();
            File.Delete(path);
            throw;
        }
    }

    /// <summary>True when <paramref name="error"/> from <see cref="Create"/> says the shared-memory file system is full (ENOSPC).</summary>
    public static bool IsOutOfSpace(IOException error) =>
        error.HResult == 28 || error.Message.Contains("space", StringComparison.OrdinalIgnoreCase);

    /// <summary>Maps an existing file made by another process (or this one).</summary>
    public static SharedMemoryFile Open(string path, long length)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (FileNotFoundException e)
        {
            throw new ArgumentException("The exported allocation no longer exists (its owner freed it or exited).", "handle", e);
        }

        try
        {
            if (stream.Length != length)
            {
                throw new ArgumentException($"The handle says {length} bytes but the allocation has {stream.Length}.", "handle");
            }

            var map = MemoryMappedFile.CreateFromFile(stream, null, length, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
            var view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.ReadWrite);
            return new SharedMemoryFile(path, map, view, length, owner: false, null);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Deletes the files of owner processes that no longer run; returns how many.</summary>
    public static int SweepDeadOwners(string directory)
    {
        int removed = 0;
        if (!Directory.Exists(directory))
        {
            return 0;
        }

        foreach (var file in Directory.EnumerateFiles(directory, "faastube-*"))
        {
            var parts = System.IO.Path.GetFileName(file).Split('.');
            if (parts.Length == 3 && parts[0] is "faastube-sim"
                && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && !IsAlive(pid))
            {
                try
                {
                    File.Delete(file);
                    removed++;
                }
                catch (IOException)
                {
                    // Another process swept it first.
                }
                catch (UnauthorizedAccessException)
                {
                    // Another user's file: not ours to remove.
                }
            }
        }

        return removed;
    }

    /// <summary>True when process <paramref name="pid"/> exists (kill(pid, 0); EPERM means it exists under another user).</summary>
    internal static bool IsAlive(int pid)
    {
        if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS())
        {
            return Interop.Libc.kill(pid, 0) == 0 || Marshal.GetLastPInvokeError() == 1;
        }

        try
        {
            using var p = System.Diagnostics.Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    protected override bool ReleaseHandle()
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
        if (IsOwner)
        {
            try
            {
                File.Delete(Path);
            }
            catch (IOException)
            {
                // Already gone (swept); nothing is lost.
            }

            _onFreed?.Invoke(Length);
        }

        return true;
    }
}
