using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace FaaSTube.Devices;

/// <summary>
/// The IPC handles this process exported, by their bytes, each with its buffer (held weakly, and
/// removed when the buffer is disposed). CUDA refuses <c>cuIpcOpenMemHandle</c> in the process that
/// exported the handle (CUDA_ERROR_INVALID_CONTEXT), so <see cref="GpuDevice.Import"/> looks here first
/// and hands out an alias of the local memory instead: a socket client inside the node's own process,
/// the pool and tests all import the same way, whichever process they are in.
/// </summary>
internal static class ExportRegistry
{
    private static readonly ConcurrentDictionary<IpcMemoryHandle, WeakReference<DeviceBuffer>> Exported = new();

    /// <summary>Records that <paramref name="buffer"/> was exported as <paramref name="handle"/>.</summary>
    public static void Add(IpcMemoryHandle handle, DeviceBuffer buffer)
    {
        Exported[handle] = new WeakReference<DeviceBuffer>(buffer);
        buffer.MarkExported(handle);
    }

    /// <summary>Forgets <paramref name="handle"/> if it still names <paramref name="buffer"/>.</summary>
    public static void Remove(IpcMemoryHandle handle, DeviceBuffer buffer)
    {
        if (Exported.TryGetValue(handle, out var entry) && (!entry.TryGetTarget(out var target) || target == buffer))
        {
            Exported.TryRemove(new KeyValuePair<IpcMemoryHandle, WeakReference<DeviceBuffer>>(handle, entry));
        }
    }

    /// <summary>The live buffer this process exported as <paramref name="handle"/>, if any.</summary>
    public static DeviceBuffer? Find(IpcMemoryHandle handle)
    {
        if (!Exported.TryGetValue(handle, out var entry))
        {
            return null;
        }

        if (entry.TryGetTarget(out var buffer) && !buffer.IsDisposed)
        {
            return buffer;
        }

        Exported.TryRemove(new KeyValuePair<IpcMemoryHandle, WeakReference<DeviceBuffer>>(handle, entry));
        return null;
    }

    /// <summary>How many handles are recorded (tests).</summary>
    internal static int Count => Exported.Count;
}

/// <summary>
/// An alias's hold on the exported buffer's memory: a reference taken when the alias is made and
/// dropped when it is disposed. Disposing the alias frees nothing; the memory lives until the
/// original and every alias are disposed, so an alias that outlives its original stays valid.
/// </summary>
internal sealed class AliasHandle : SafeHandle
{
    private readonly SafeHandle _original;

    public AliasHandle(SafeHandle original)
        : base(0, ownsHandle: true)
    {
        bool added = false;
        original.DangerousAddRef(ref added); // throws ObjectDisposedException when the original is already gone
        _original = original;
        SetHandle(original.DangerousGetHandle() is 0 ? 1 : original.DangerousGetHandle());
    }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        _original.DangerousRelease();
        return true;
    }
}
