using FaaSTube.Devices;
using FaaSTube.Memory;
using FaaSTube.Transfers;

namespace FaaSTube.Channels;

/// <summary>What the node runs on one GPU: its elastic pool and its host transfer engine.</summary>
internal sealed class NodeDevice : IDisposable
{
    /// <param name="device">The GPU.</param>
    /// <param name="pool">The pool's options.</param>
    /// <param name="transfers">The engine's options.</param>
    /// <param name="router">The node's router: the engine's host lane reports to it, so harvesting never borrows a busy lane.</param>
    public NodeDevice(GpuDevice device, GpuPoolOptions pool, TransferEngineOptions transfers, PathRouter router)
    {
        Device = device;
        Pool = new GpuMemoryPool(device, pool);
        Engine = new TransferEngine(device, transfers, router);
    }

    public GpuDevice Device { get; }

    public GpuMemoryPool Pool { get; }

    public TransferEngine Engine { get; }

    public void Dispose()
    {
        Engine.Dispose();
        Pool.Dispose();
    }
}
