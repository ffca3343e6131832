using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Reflection;

namespace FaaSTube;

/// <summary>
/// The library's meter and activity source, both named <c>FaaSTube</c> and versioned with the
/// assembly's informational version: subscribe with <c>AddMeter(Telemetry.Name)</c> and
/// <c>AddSource(Telemetry.Name)</c>. The instruments and spans are listed in docs/architecture.md.
/// </summary>
public static class Telemetry
{
    /// <summary>The name of the meter and the activity source.</summary>
    public const string Name = "FaaSTube";

    /// <summary>The assembly's informational version without build metadata (<c>1.2.3-beta</c>, not <c>1.2.3-beta+abc</c>), else its file version.</summary>
    internal static string Version { get; } = ReadVersion(typeof(Telemetry).Assembly);

    /// <summary>Spans of FaaSTube: client calls (<see cref="ActivityKind.Client"/>), the node's handling of each request (<see cref="ActivityKind.Server"/>), transfers and the pool's moves (<see cref="ActivityKind.Internal"/>).</summary>
    public static ActivitySource ActivitySource { get; } = new(Name, Version);

    /// <summary>The meter of users without dependency injection: one for the process, never disposed.</summary>
    private static readonly Lazy<Meter> Shared = new(() => new Meter(Options()));

    /// <summary>
    /// The <c>FaaSTube</c> meter: from <paramref name="factory"/> (the host's <see cref="IMeterFactory"/>,
    /// which owns and disposes it, and hands every caller the same one), or the process-wide one when null.
    /// </summary>
    internal static Meter Meter(IMeterFactory? factory) => factory is null ? Shared.Value : factory.Create(Options());

    private static MeterOptions Options() => new(Name) { Version = Version };

    private static string ReadVersion(Assembly assembly)
    {
        var version = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            ?? assembly.GetCustomAttribute<AssemblyFileVersionAttribute>()?.Version
            ?? assembly.GetName().Version?.ToString()
            ?? "0.0.0";
        int metadata = version.IndexOf('+', StringComparison.Ordinal);
        return metadata < 0 ? version : version[..metadata];
    }
}
