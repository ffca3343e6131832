using FaaSTube.Platform;
using FaaSTube.Topology;

namespace FaaSTube.Devices.Simulated;

/// <summary>
/// A GPU simulated in shared memory (DESIGN.md section 5): real bytes, real copies, memory other
/// processes can map, and an optional link model under a virtual clock.
/// </summary>
internal sealed class SimulatedGpuDevice : GpuDevice
{
    private readonly SimulatedMachine _machine;
    private readonly long _total;
    private long _allocated;

    public SimulatedGpuDevice(int ordinal, SimulatedMachine machine, GpuSystemOptions options)
        : base(ordinal, options)
    {
        _machine = machine;
        _total = Math.Min(options.SimulatedMemoryBytes, machine.Topology.MemoryBytes);
    }

    public override GpuBackend Backend => GpuBackend.Simulated;

    /// <summary>Each allocation is a new file (<see cref="SharedMemoryFile.Create"/>): it reads as zeros.</summary>
    internal override bool FreshAllocationsAreZeroed => true;

    public override string Name => $"Simulated GPU ({_machine.Topology.Name})";

    public override string PciBusId => $"0000:{0x10 + Ordinal:x2}:00.0";

    public override long TotalMemory => _total;

    internal SimulatedMachine Machine => _machine;

    /// <summary>The modelled host link (the topology's).</summary>
    internal override double HostLinkBytesPerSecond => _machine.Topology.HostBytesPerSecond;

    private protected override GpuMemoryInfo GetMemoryInfoCore()
    {
        long free = _total - Volatile.Read(ref _allocated);
        try
        {
            free = Math.Min(free, new DriveInfo(_machine.Directory).AvailableFreeSpace);
        }
        catch (ArgumentException)
        {
            // Not a drive we can ask about: the model's number stands.
        }

        return new GpuMemoryInfo(Math.Max(0, free), _total);
    }

    private protected override DeviceBuffer AllocateCore(long bytes)
    {
        long after = Interlocked.Add(ref _allocated, bytes);
        if (after > _total)
        {
            Interlocked.Add(ref _allocated, -bytes);
            throw new DeviceOutOfMemoryException(
                $"{this} cannot allocate {bytes} bytes: {_total - (after - bytes)} of {_total} are free.");
        }

        try
        {
            var file = SharedMemoryFile.Create(
                SharedMemoryFile.PathOf(_machine.Directory, Environment.ProcessId, Guid.NewGuid()), bytes,
                freed => Interlocked.Add(ref _allocated, -freed));
            unsafe
            {
                return new DeviceBuffer(this, file, (ulong)file.Pointer, bytes, imported: false);
            }
        }
        catch (IOException e) when (SharedMemoryFile.IsOutOfSpace(e))
        {
            Interlocked.Add(ref _allocated, -bytes);
            throw new DeviceOutOfMemoryException($"Simulated device memory is full: {bytes} bytes do not fit in {_machine.Directory}.", e);
        }
        catch
        {
            Interlocked.Add(ref _allocated, -bytes);
            throw;
        }
    }

    private protected override unsafe PinnedBuffer AllocatePinnedCore(long bytes)
    {
        var memory = new NativeHostMemory(bytes);
        return new PinnedBuffer(this, memory, memory.DangerousGetHandle(), bytes, registered: false);
    }

    private protected override PinnedBuffer RegisterHostMemoryCore(nint pointer, long bytes) =>
        new(this, new NativeHostMemory(pointer), pointer, bytes, registered: true);

    private protected override GpuStream CreateStreamCore(int priority) => new SimulatedGpuStream(this, priority);

    /// <summary>A view of a live simulated stream of this device, found by its id (<see cref="GpuStream.NativeHandle"/>).</summary>
    private protected override GpuStream WrapStreamCore(nint nativeStream)
    {
        var stream = SimulatedGpuStream.Find(nativeStream)
            ?? throw new ArgumentException($"0x{nativeStream:x} is not a live simulated stream (GpuStream.NativeHandle of a stream not disposed).", nameof(nativeStream));
        if (stream.Device != this)
        {
            throw new ArgumentException($"The stream 0x{nativeStream:x} runs on {stream.Device}, not on {this}.", nameof(nativeStream));
        }

        return new SimulatedStreamView(stream);
    }

    /// <summary>No driver, no context.</summary>
    private protected override nint NativeContextCore => 0;

    private protected override IpcMemoryHandle ExportCore(DeviceBuffer buffer)
    {
        var file = (SharedMemoryFile)buffer.Handle;
        Span<byte> opaque = stackalloc byte[64];
        opaque.Clear();
        var name = Path.GetFileName(file.Path);
        int written = System.Text.Encoding.ASCII.GetBytes(name, opaque);
        if (written >= opaque.Length)
        {
            throw new InvalidOperationException($"The shared-memory name {name} is too long for a handle.");
        }

        return new IpcMemoryHandle(GpuBackend.Simulated, buffer.Length, opaque);
    }

    private protected override DeviceBuffer ImportCore(IpcMemoryHandle handle)
    {
        var opaque = handle.Opaque;
        int end = opaque.IndexOf((byte)0);
        var name = System.Text.Encoding.ASCII.GetString(end < 0 ? opaque : opaque[..end]);
        if (!name.StartsWith("faastube-sim.", StringComparison.Ordinal) || name.Contains('/') || name.Contains(".."))
        {
            throw new ArgumentException("The handle does not name a simulated allocation.", nameof(handle));
        }

        // As CUDA: cuIpcOpenMemHandle in the exporting process fails (GpuDevice.Import aliases live local exports before this).
        if (name.Split('.') is [_, var pid, _] && pid == Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture))
        {
            throw new ArgumentException(
                "The IPC handle could not be opened (its allocation was freed, or it was exported by this same process).",
                nameof(handle), new Native.CudaException(Native.CudaResult.ErrorInvalidContext, "cuIpcOpenMemHandle_v2 (simulated: the handle was exported by this process)"));
        }

        var file = SharedMemoryFile.Open(Path.Combine(_machine.Directory, name), handle.Length);
        unsafe
        {
            return new DeviceBuffer(this, file, (ulong)file.Pointer, handle.Length, imported: true);
        }
    }

    private protected override bool CanAccessPeerCore(GpuDevice peer) =>
        _machine.Topology.Peer(Ordinal, peer.Ordinal).Kind != PeerLinkKind.None;

    private protected override void EnablePeerAccessCore(GpuDevice peer)
    {
        // Simulated memory is host memory: every device already reaches every other.
    }

    private protected override void DisposeCore()
    {
        // Buffers own their files; nothing device-wide to release.
    }
}
