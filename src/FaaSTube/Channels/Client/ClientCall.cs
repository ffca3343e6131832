using System.Diagnostics;
using FaaSTube.Diagnostics;

namespace FaaSTube.Channels.Client;

/// <summary>
/// One client call's span (<c>faastube.{operation}</c>, <see cref="ActivityKind.Client"/>; the node's
/// spans of the requests it sends are its children, their trace context carried in each request) and
/// its <c>faastube.client.operation.duration</c>. Used as
/// <c>using var call = ...; try { ... } catch (Exception e) when (call.Failed(e)) { }</c>: the filter
/// records the failure and never catches.
/// </summary>
internal sealed class ClientCall : IDisposable
{
    private readonly ChannelMetrics _metrics;
    private readonly string _operation;
    private readonly long _started = Stopwatch.GetTimestamp();
    private string? _error;

    private ClientCall(ChannelMetrics metrics, string operation, Activity? activity)
    {
        _metrics = metrics;
        _operation = operation;
        Activity = activity;
    }

    /// <summary>The span (null when nobody listens).</summary>
    public Activity? Activity { get; }

    /// <summary>The data path, once known (<c>control</c> until then).</summary>
    public string Path { get; set; } = "control";

    public static ClientCall Start(ChannelMetrics metrics, string operation, string workflow, TubeId? id = null, int? device = null)
    {
        var activity = Telemetry.ActivitySource.StartActivity($"faastube.{operation}", ActivityKind.Client);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag(TelemetryTags.Operation, operation);
            activity.SetTag(TelemetryTags.Workflow, workflow);
            if (id is { } data)
            {
                activity.SetTag(TelemetryTags.DataId, data.ToString());
            }

            if (device is { } gpu)
            {
                activity.SetTag(TelemetryTags.GpuIndex, gpu);
            }
        }

        return new ClientCall(metrics, operation, activity);
    }

    /// <summary>Records <paramref name="exception"/> on the span and the duration; false, so an exception filter lets it through.</summary>
    public bool Failed(Exception exception)
    {
        _error ??= Spans.ErrorType(exception);
        Spans.Fail(Activity, exception);
        return false;
    }

    public void Dispose()
    {
        Activity?.SetTag(TelemetryTags.Path, Path);
        Activity?.Dispose();
        var tags = new TagList { { TelemetryTags.Operation, _operation }, { TelemetryTags.Path, Path } };
        if (_error is not null)
        {
            tags.Add(TelemetryTags.ErrorType, _error);
        }

        _metrics.ClientDuration.Record(Stopwatch.GetElapsedTime(_started).TotalSeconds, tags);
    }
}
