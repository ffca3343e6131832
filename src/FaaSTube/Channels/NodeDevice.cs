using FaaSTube.Devices;
using FaaSTube.Hosting;
using FaaSTube.Memory;
using FaaSTube.Transfers;
using FaaSTube.Transfers.Routing;

namespace FaaSTube.Channels;

/// <summary>What the node runs on one GPU: its elastic pool and its host transfer engine, with the node's services.</summary>
internal sealed class NodeDevice : IAsyncDisposable
{
    /// <param name="device">The GPU.</param>
    /// <param name="pool">The pool's options.</param>
    /// <param name="transfers">The engine's options.</param>
    /// <param name="router">The node's router: the engine's host lane reports to it, so harvesting never borrows a busy lane.</param>
    /// <param name="services">The node's logger factory, meter factory and clock.</param>
    public NodeDevice(GpuDevice device, GpuPoolOptions pool, TransferEngineOptions transfers, PathRouter router, FaaSTubeServices services)
    {
        Device = device;
        Pool = new GpuMemoryPool(device, pool, services);
        Engine = new TransferEngine(device, transfers, router, services);
    }

    public GpuDevice Device { get; }

    public GpuMemoryPool Pool { get; }

    public TransferEngine Engine { get; }

    public async ValueTask DisposeAsync()
    {
        await Engine.DisposeAsync().ConfigureAwait(false);
        await Pool.DisposeAsync().ConfigureAwait(false);
    }
}
