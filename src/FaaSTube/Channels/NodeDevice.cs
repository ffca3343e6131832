using FaaSTube.Devices;
using FaaSTube.Hosting;
using FaaSTube.Memory;
using FaaSTube.Transfers;

namespace FaaSTube.Channels;

/// <summary>What the node runs on one GPU: its elastic pool and its host transfer engine, with the node's services.</summary>
internal sealed class NodeDevice : IAsyncDisposable
{
    public NodeDevice(GpuDevice device, GpuPoolOptions pool, TransferEngineOptions transfers, FaaSTubeServices services)
    {
        Device = device;
        Pool = new GpuMemoryPool(device, pool, services);
        Engine = new TransferEngine(device, transfers, services);
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
