namespace FaaSTube.Samples.Traffic;

/// <summary>The three ways the workflow passes data between its stages, run side by side.</summary>
internal enum Mode
{
    /// <summary>Through FaaSTube: data stays on the GPU (zero-copy hand-offs through the pool).</summary>
    Tube,

    /// <summary>Host memory, typical: each intermediate is a new pageable shared-memory object (INFless-style).</summary>
    HostTypical,

    /// <summary>Host memory, best: one pinned shared-memory region per producer, registered once, DMA in and out.</summary>
    HostBest,
}

internal static class Modes
{
    public static readonly Mode[] All = [Mode.Tube, Mode.HostTypical, Mode.HostBest];

    /// <summary>The word a stage request carries.</summary>
    public static string Wire(this Mode mode) => mode switch
    {
        Mode.Tube => "tube",
        Mode.HostTypical => "typical",
        _ => "best",
    };

    public static Mode Parse(string wire) => All.Single(m => m.Wire() == wire);

    public static string Title(this Mode mode) => mode switch
    {
        Mode.Tube => "FaaSTube",
        Mode.HostTypical => "host, typical",
        _ => "host, best",
    };

    public static string Description(this Mode mode) => mode switch
    {
        Mode.Tube => "data stays on the GPU: pool buffers mapped by the next stage, zero copy",
        Mode.HostTypical => "GPU -> new pageable shared-memory object -> GPU per hop (copies staged by the driver)",
        _ => "GPU -> pinned shared memory (registered once per process) -> GPU per hop, direct DMA",
    };
}
