using FaaSTube.Devices.Cuda;
using FaaSTube.Devices.Simulated;
using FaaSTube.Native;
using FaaSTube.Platform;
using FaaSTube.Topology;
using Microsoft.Extensions.Logging;
using FaaSTube.Hosting;

namespace FaaSTube.Devices;

/// <summary>
/// The GPUs of this machine, real or simulated: the entry point of the device layer.
/// <code>
/// using var gpus = GpuSystem.Open();            // CUDA if present, else a simulated H100
/// using var buffer = gpus.Devices[0].Allocate(1 &lt;&lt; 20);
/// using var stream = gpus.Devices[0].CreateStream();
/// await stream.CopyAsync(bytes, buffer);
/// </code>
/// </summary>
public sealed partial class GpuSystem : IDisposable
{
    private GpuSystem(GpuBackend backend, IReadOnlyList<GpuDevice> devices, GpuTopology topology, string reason)
    {
        Backend = backend;
        Devices = devices;
        Topology = topology;
        SelectionReason = reason;
    }

    /// <summary>The backend in use (never <see cref="GpuBackend.Auto"/>).</summary>
    public GpuBackend Backend { get; }

    /// <summary>The devices, by ordinal.</summary>
    public IReadOnlyList<GpuDevice> Devices { get; }

    /// <summary>How the devices are linked: the simulated preset, or what the driver reports.</summary>
    public GpuTopology Topology { get; }

    /// <summary>Why this backend was chosen (also logged).</summary>
    public string SelectionReason { get; }

    /// <summary>
    /// Opens the devices. With <see cref="GpuBackend.Auto"/>, the environment variable
    /// <see cref="GpuSystemOptions.BackendVariable"/> decides if set; otherwise CUDA is used when a
    /// driver and a GPU are present, and the simulated GPU when not. The choice is logged.
    /// </summary>
    /// <param name="options">Backend and simulation settings; null for the defaults.</param>
    /// <exception cref="PlatformNotSupportedException">CUDA was asked for and is not available (the reason is in the message).</exception>
    public static GpuSystem Open(GpuSystemOptions? options = null) => Open(options, FaaSTubeServices.Default);

    /// <inheritdoc cref="Open(GpuSystemOptions?)"/>
    /// <param name="options">Backend and simulation settings; null for the defaults.</param>
    /// <param name="loggerFactory">Where the backend choice and device events are logged.</param>
    public static GpuSystem Open(GpuSystemOptions? options, ILoggerFactory? loggerFactory) =>
        Open(options, FaaSTubeServices.From(loggerFactory, null, null));

    internal static GpuSystem Open(GpuSystemOptions? options, FaaSTubeServices services)
    {
        options ??= new GpuSystemOptions();
        var logger = services.Logger<GpuSystem>();
        var (backend, reason) = Choose(options.Backend, Environment.GetEnvironmentVariable(GpuSystemOptions.BackendVariable));
        GpuSystem system = backend == GpuBackend.Cuda ? OpenCuda(options, reason) : OpenSimulated(options, reason);
        LogOpened(logger, system.Backend, system.Devices.Count, system.Topology.Name, reason);
        return system;
    }

    /// <summary>Disposes every device (their buffers and streams stay valid until disposed themselves).</summary>
    public void Dispose()
    {
        foreach (var device in Devices)
        {
            device.Dispose();
        }
    }

    /// <summary>The backend for <paramref name="requested"/>, given the value of <see cref="GpuSystemOptions.BackendVariable"/>.</summary>
    internal static (GpuBackend Backend, string Reason) Choose(GpuBackend requested, string? variable)
    {
        if (requested != GpuBackend.Auto)
        {
            return (requested, "chosen by the options");
        }

        if (!string.IsNullOrWhiteSpace(variable) && !variable.Equals("auto", StringComparison.OrdinalIgnoreCase))
        {
            return Enum.TryParse<GpuBackend>(variable, ignoreCase: true, out var fromEnv) && fromEnv != GpuBackend.Auto
                ? (fromEnv, $"chosen by {GpuSystemOptions.BackendVariable}={variable}")
                : throw new ArgumentException($"{GpuSystemOptions.BackendVariable}={variable} is not one of cuda, simulated, auto.");
        }

        if (!CudaLibrary.IsAvailable)
        {
            return (GpuBackend.Simulated, $"CUDA is not available ({CudaLibrary.UnavailableReason})");
        }

        return CudaDeviceCount() > 0
            ? (GpuBackend.Cuda, $"CUDA driver {CudaLibrary.DriverLibrary} with a GPU")
            : (GpuBackend.Simulated, "the CUDA driver reports no GPU");
    }

    private static unsafe int CudaDeviceCount()
    {
        int count;
        return Interop.Cuda.cuDeviceGetCount(&count) == CudaResult.Success ? count : 0;
    }

    private static GpuSystem OpenCuda(GpuSystemOptions options, string reason)
    {
        CudaLibrary.ThrowIfUnavailable();
        int count = CudaDeviceCount();
        if (count == 0)
        {
            throw new PlatformNotSupportedException("CUDA is loaded but reports no GPU.");
        }

        var devices = new List<GpuDevice>(count);
        try
        {
            for (int i = 0; i < count; i++)
            {
                devices.Add(new CudaGpuDevice(i, options));
            }
        }
        catch
        {
            devices.ForEach(d => d.Dispose());
            throw;
        }

        return new GpuSystem(GpuBackend.Cuda, devices, CudaTopology.Discover(devices), reason);
    }

    /// <summary>No devices at all: for a client that moves host data only and must not open a GPU (a node's peer fetch, in the node or its network gateway).</summary>
    internal static GpuSystem HostOnly() => new(GpuBackend.Simulated, [], GpuTopology.SingleH100, "host data only (a peer fetch's client)");

    private static GpuSystem OpenSimulated(GpuSystemOptions options, string reason)
    {
        var machine = new SimulatedMachine(options);
        SharedMemoryFile.SweepDeadOwners(machine.Directory);
        var devices = Enumerable.Range(0, machine.Topology.GpuCount)
            .Select(i => (GpuDevice)new SimulatedGpuDevice(i, machine, options))
            .ToArray();
        return new GpuSystem(GpuBackend.Simulated, devices, machine.Topology, reason);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "FaaSTube backend: {Backend}, {Count} device(s), topology {Topology} ({Reason})")]
    private static partial void LogOpened(ILogger logger, GpuBackend backend, int count, string topology, string reason);
}
