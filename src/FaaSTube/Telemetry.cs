using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace FaaSTube;

/// <summary>The library's <see cref="Meter"/> and <see cref="ActivitySource"/>, both named <c>FaaSTube</c>.</summary>
public static class Telemetry
{
    /// <summary>The name of the meter and the activity source.</summary>
    public const string Name = "FaaSTube";

    /// <summary>All FaaSTube metrics: listen to it with a MeterListener or OpenTelemetry.</summary>
    public static Meter Meter { get; } = new(Name, "0.1.0");

    /// <summary>Spans of FaaSTube calls.</summary>
    public static ActivitySource ActivitySource { get; } = new(Name, "0.1.0");
}
