using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FaaSTube.Hosting;

/// <summary>
/// The one composition root of the shared services: the node, its GPUs, pools, transfer engines and
/// the client get their logger factory, meter factory and clock from here, and from nowhere else
/// (no options class carries its own). Built from dependency injection
/// (<see cref="FaaSTubeServiceCollectionExtensions"/>) or from what a non-DI caller passes to
/// <c>TubeNode.StartAsync</c> / <c>TubeClient.ConnectAsync</c>; <see cref="Default"/> otherwise.
/// </summary>
/// <param name="LoggerFactory">Where every component logs.</param>
/// <param name="MeterFactory">Where instruments are created (null: the library's static meter, <c>src/FaaSTube/Telemetry.cs</c>).</param>
/// <param name="TimeProvider">The clock of TTLs, deadlines, pool windows and timers.</param>
internal sealed record FaaSTubeServices(ILoggerFactory LoggerFactory, IMeterFactory? MeterFactory, TimeProvider TimeProvider)
{
    /// <summary>No logging, the static meter, the system clock.</summary>
    public static FaaSTubeServices Default { get; } = new(NullLoggerFactory.Instance, null, TimeProvider.System);

    /// <summary>These services, with whichever of the three the caller gave replaced.</summary>
    public static FaaSTubeServices From(ILoggerFactory? loggerFactory, IMeterFactory? meterFactory, TimeProvider? timeProvider) =>
        new(loggerFactory ?? NullLoggerFactory.Instance, meterFactory, timeProvider ?? TimeProvider.System);

    /// <summary>A logger for <typeparamref name="T"/>.</summary>
    public ILogger<T> Logger<T>() => LoggerFactory.CreateLogger<T>();
}
