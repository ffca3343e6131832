using System.Globalization;
using System.Net;

namespace FaaSTube.Bench.Remote;

/// <summary>
/// The extension point of the remote-baseline scenario: something measured across the network
/// namespaces from the peer's side, as a remote function would see it. Its server runs in the root
/// namespace (<see cref="ServeAsync"/>, where the node runs); <see cref="MeasureAsync"/> runs in the
/// peer namespace (this program's "remote-baseline-peer" mode, started with <c>ip netns exec</c>)
/// and gets only the connect address. Subjects are listed in <see cref="RemoteBaselineScenario.Subjects"/>.
/// <para>
/// <see cref="FaaSTubeSubject"/> is FaaSTube's remote client against a node: its <see cref="ServeAsync"/>
/// starts a <c>TubeNode</c> listening on the address it is given and returns its <c>ucx://host:port</c>
/// (and the workflow's secret for the peer's environment); its <see cref="MeasureAsync"/> connects a
/// remote <c>TubeClient</c> and times Put and Get of each size ("put" and "get", the directions of
/// <see cref="BindingsSubject"/>'s rows, so the report sets them side by side) and the Where call.
/// </para>
/// </summary>
internal abstract class RemoteSubject
{
    /// <summary>The subject's name in the report and on the peer's command line (no spaces).</summary>
    public abstract string Name { get; }

    /// <summary>In the root namespace: starts the server on <paramref name="at"/> (the link's host address), UCX kept to <paramref name="device"/>; returns the connect address and what stops it.</summary>
    public abstract Task<RemoteServer> ServeAsync(IPAddress at, string device);

    /// <summary>In the peer namespace: measures against <paramref name="connectAddress"/>, every size of <paramref name="plan"/>.</summary>
    public abstract Task<IReadOnlyList<RemoteRow>> MeasureAsync(string connectAddress, RemotePlan plan);
}

/// <summary>A running server: the address a peer connects to, what the peer's environment must carry (a secret: never on its command line), and its stop.</summary>
internal sealed class RemoteServer(string connectAddress, Func<ValueTask> stop, IReadOnlyDictionary<string, string>? environment = null) : IAsyncDisposable
{
    public string ConnectAddress { get; } = connectAddress;

    public IReadOnlyDictionary<string, string> Environment { get; } = environment ?? new Dictionary<string, string>();

    public ValueTask DisposeAsync() => stop();
}

/// <summary>
/// One measured figure. <see cref="Test"/>: "put" (peer to root, bandwidth), "get" (root to peer,
/// bandwidth) or "latency" (8-byte one-way latency: half the round trip, as ucx_perftest reports it).
/// </summary>
internal sealed record RemoteRow(string Subject, string Test, string What, long Bytes, double Value, double? Mean = null)
{
    /// <summary>One line of the peer's output (tab-separated, invariant culture).</summary>
    public string Serialize() => string.Join('\t', "row", Subject, Test, What, Inv(Bytes), Inv(Value), Mean is { } m ? Inv(m) : "-");

    public static RemoteRow? Parse(string line)
    {
        var f = line.Split('\t');
        return f.Length == 7 && f[0] == "row"
            ? new RemoteRow(f[1], f[2], f[3], long.Parse(f[4], CultureInfo.InvariantCulture), double.Parse(f[5], CultureInfo.InvariantCulture),
                f[6] == "-" ? null : double.Parse(f[6], CultureInfo.InvariantCulture))
            : null;
    }

    private static string Inv(double value) => value.ToString("R", CultureInfo.InvariantCulture);
}

/// <summary>
/// One timed Where of a FaaSTube subject, as the peer saw it: when it was sent and when its answer
/// came, in <see cref="DateTime.UtcNow"/> ticks (the wall clock the node's spans use, one for every
/// process of the machine and both namespaces), for the scenario's --breakdown.
/// </summary>
internal static class RemoteStamp
{
    public static string Serialize(string subject, long sent, long answered) =>
        string.Join('\t', "stamp", subject, sent.ToString(CultureInfo.InvariantCulture), answered.ToString(CultureInfo.InvariantCulture));

    public static (string Subject, long Sent, long Answered)? Parse(string line)
    {
        var f = line.Split('\t');
        return f.Length == 4 && f[0] == "stamp"
            ? (f[1], long.Parse(f[2], CultureInfo.InvariantCulture), long.Parse(f[3], CultureInfo.InvariantCulture))
            : null;
    }
}

/// <summary>What to measure: the message sizes, how many bytes per size and direction, the latency round trips.</summary>
internal sealed record RemotePlan(long[] Sizes, long BytesPerSize, int LatencyIterations, int LatencyWarmup)
{
    /// <summary>Messages of <paramref name="size"/> that make <see cref="BytesPerSize"/> (at least 4).</summary>
    public int CountOf(long size) => (int)Math.Max(4, BytesPerSize / size);

    /// <summary>Warm-up messages before a size is timed (a tenth, at least 1).</summary>
    public int WarmupOf(long size) => Math.Max(1, CountOf(size) / 10);

    public string[] ToArgs() =>
    [
        string.Join(',', Sizes.Select(s => s.ToString(CultureInfo.InvariantCulture))),
        BytesPerSize.ToString(CultureInfo.InvariantCulture),
        LatencyIterations.ToString(CultureInfo.InvariantCulture),
        LatencyWarmup.ToString(CultureInfo.InvariantCulture),
    ];

    public static RemotePlan FromArgs(string[] args) => new(
        [.. args[0].Split(',').Select(s => long.Parse(s, CultureInfo.InvariantCulture))],
        long.Parse(args[1], CultureInfo.InvariantCulture),
        int.Parse(args[2], CultureInfo.InvariantCulture),
        int.Parse(args[3], CultureInfo.InvariantCulture));
}
