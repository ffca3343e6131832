namespace FaaSTube.Devices;

/// <summary>Which implementation of the device layer runs.</summary>
public enum GpuBackend
{
    /// <summary>CUDA when a driver and at least one GPU are present, otherwise the simulated GPU.</summary>
    Auto = 0,

    /// <summary>Real GPUs through the CUDA driver API.</summary>
    Cuda = 1,

    /// <summary>GPUs simulated in shared memory, with real copies and an optional link model.</summary>
    Simulated = 2,
}
