using FaaSTube.Devices.Simulated;
using FaaSTube.Topology;

namespace FaaSTube.Devices;

/// <summary>How <see cref="GpuSystem.Open(GpuSystemOptions?)"/> picks and configures the backend.</summary>
public sealed class GpuSystemOptions
{
    /// <summary>The environment variable that overrides <see cref="GpuBackend.Auto"/>: <c>cuda</c>, <c>simulated</c> or <c>auto</c>.</summary>
    public const string BackendVariable = "FAASTUBE_BACKEND";

    /// <summary>The backend. <see cref="GpuBackend.Auto"/> (the default) lets <see cref="BackendVariable"/> decide, then probes for CUDA.</summary>
    public GpuBackend Backend { get; set; } = GpuBackend.Auto;

    /// <summary>The simulated machine: how many GPUs and how they are linked. Default: one H100 on PCIe Gen5.</summary>
    public GpuTopology SimulatedTopology { get; set; } = GpuTopology.SingleH100;

    /// <summary>Device memory of each simulated GPU, in bytes (default 8 GiB; backed lazily by shared memory).</summary>
    public long SimulatedMemoryBytes { get; set; } = 8L << 30;

    /// <summary>
    /// A virtual clock for the simulated GPU: when set, every copy is charged to the links it uses
    /// (bandwidth and latency from <see cref="SimulatedTopology"/>) and the clock advances to its modelled
    /// completion, so timing tests are exact. When null, copies run at memcpy speed with no model.
    /// </summary>
    public VirtualClock? SimulatedClock { get; set; }

    /// <summary>
    /// When true, each simulated op completes when the link model says it would, in wall-clock time
    /// (latency + bytes / bandwidth of its links, ops of a stream one after another), through the
    /// same kind of completion thread as a CUDA stream: for probes of what waiting costs, e.g. the
    /// CPU a 100 ms copy takes while it is awaited. The bytes still move at memcpy speed. Default false.
    /// </summary>
    public bool SimulatedRealTime { get; set; }

    /// <summary>The folder that holds simulated device memory (default <c>/dev/shm</c>, or the temp folder where there is none).</summary>
    public string? SimulatedMemoryDirectory { get; set; }

    /// <summary>Copies longer than this are cut into chunks, with cancellation checked between chunks (default 64 MiB).</summary>
    public long CopyChunkBytes { get; set; } = 64L << 20;

    /// <summary>A copy (what a node keeps from the moment it starts: later changes to this object do not reach it).</summary>
    internal GpuSystemOptions Clone() => (GpuSystemOptions)MemberwiseClone();
}
