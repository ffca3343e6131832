using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace FaaSTube.Bench.Remote;

/// <summary>
/// The node's <c>faastube.where</c> server spans while a subject runs (this process is the node's:
/// remote-baseline serves every FaaSTube subject from it), start and end in <see cref="DateTime.UtcNow"/>
/// ticks, for <see cref="WhereLegs"/>. Every span of the FaaSTube source is recorded meanwhile.
/// </summary>
internal sealed class WhereSpans : IDisposable
{
    private readonly ConcurrentQueue<(long Start, long End)> _taken = new();
    private readonly ActivityListener _listener;

    public WhereSpans()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == Telemetry.Name,
            Sample = static (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllData,
            ActivityStopped = activity =>
            {
                if (activity.Kind == ActivityKind.Server && activity.OperationName == "faastube.where")
                {
                    long start = activity.StartTimeUtc.Ticks;
                    _taken.Enqueue((start, start + activity.Duration.Ticks));
                }
            },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public void Clear() => _taken.Clear();

    public IReadOnlyList<(long Start, long End)> Taken() => [.. _taken.OrderBy(s => s.Start)];

    public void Dispose() => _listener.Dispose();
}

/// <summary>
/// One subject's Where calls cut into legs: the peer's send to the node's span start (client, UCX,
/// and through the gateway its relay's way in), the span (the node executing it), the span's end to
/// the peer having the answer (the way back). Each call is matched with the node's span that lies
/// inside it; calls without one are left out (and counted).
/// </summary>
internal sealed record WhereLegs(string What, int Matched, int Calls, double RequestP50, double ExecuteP50, double AnswerP50, double TotalP50)
{
    public static WhereLegs Of(string what, IReadOnlyList<(long Sent, long Answered)> calls, IReadOnlyList<(long Start, long End)> spans)
    {
        var request = new List<double>();
        var execute = new List<double>();
        var answer = new List<double>();
        var total = new List<double>();
        int next = 0;
        foreach (var (sent, answered) in calls.OrderBy(c => c.Sent))
        {
            while (next < spans.Count && spans[next].Start < sent)
            {
                next++;
            }

            if (next < spans.Count && spans[next].End <= answered)
            {
                var (start, end) = spans[next++];
                request.Add((start - sent) / 10.0);
                execute.Add((end - start) / 10.0);
                answer.Add((answered - end) / 10.0);
                total.Add((answered - sent) / 10.0);
            }
        }

        return new WhereLegs(what, request.Count, calls.Count, P50(request), P50(execute), P50(answer), P50(total));
    }

    public static string Report(IReadOnlyList<WhereLegs> legs)
    {
        if (legs.Count == 0)
        {
            return "";
        }

        var md = new StringBuilder();
        md.AppendLine();
        md.AppendLine("Where, leg by leg (`--breakdown`: the node's server span against the peer's send and answer, one wall clock; p50 of each leg in us, the whole round trip, not half):");
        md.AppendLine();
        md.AppendLine("| what | client send -> node starts | node executes | node ends -> client has the answer | round trip | calls matched |");
        md.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: |");
        foreach (var l in legs)
        {
            md.AppendLine(CultureInfo.InvariantCulture, $"| {l.What} | {l.RequestP50:0.0} | {l.ExecuteP50:0.0} | {l.AnswerP50:0.0} | {l.TotalP50:0.0} | {l.Matched} of {l.Calls} |");
        }

        return md.ToString();
    }

    private static double P50(List<double> values) => values.Count == 0 ? double.NaN : BindingsSubject.Percentile([.. values], 0.5);
}
