using FaaSTube.Devices;
using FaaSTube.Memory;
using FaaSTube.Transfers;

namespace FaaSTube.Channels;

/// <summary>What the node runs on one GPU: its elastic pool and its host transfer engine.</summary>
internal sealed class NodeDevice : IDisposable
{
    public NodeDevice(GpuDevice device, GpuPoolOptions pool, TransferEngineOptions transfers)
    {
        Device = device;
        Pool = new GpuMemoryPool(device, pool);
        Engine = new TransferEngine(device, transfers);
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
