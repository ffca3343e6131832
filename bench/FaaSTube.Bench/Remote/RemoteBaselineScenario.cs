using FaaSTube.Channels;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using FaaSTube.Native;
using FaaSTube.Tests.Support;
using ScottPlot;

namespace FaaSTube.Bench.Remote;

/// <summary>
/// remote-baseline: the floor the remote client will be measured against, across two network
/// namespaces joined by a veth pair (tests/FaaSTube.Tests/Support/NetworkNamespace.cs), over UCX's
/// TCP transport only: <c>ucx_perftest</c> (package ucx-utils) tag_bw and ucp_am_bw at each size and
/// tag_lat at 8 bytes, server in the root namespace, client in the peer (the client sends: the "put"
/// direction), and tag_lat at each size, for the floor of one call at a time (<see cref="OneAtATime"/>:
/// the streams of tag_bw and ucp_am_bw keep many messages in flight, a FaaSTube Put or Get is one
/// message and its answer); beside it, in the same run and over the same link, each <see cref="RemoteSubject"/>
/// of <see cref="Subjects"/> (our bindings' tagged send/receive, both directions, and an 8-byte
/// ping-pong; FaaSTube's remote Put, Get and Where against a node). Prints a Markdown report; <c>--out FILE.md</c> also writes it and a chart (FILE.svg).
/// Needs root, iproute2, libucx0 and ucx-utils.
/// <c>--breakdown</c> also splits each FaaSTube Where into its legs (WhereLegs.cs: the node's server
/// spans, taken by an ActivityListener in this process, the node's, against the peer's send and
/// answer times), at the cost of recording every span of the node meanwhile.
/// <code>dotnet run -c Release --project bench/FaaSTube.Bench -- remote-baseline [--sizes-mib 1,16,64,256] [--mib-per-size 1024] [--latency-iterations 20000] [--breakdown] [--out bench/results/DATE-remote-baseline.md]</code>
/// </summary>
internal static class RemoteBaselineScenario
{
    /// <summary>The subjects measured from the peer namespace (the extension point: <see cref="RemoteSubject"/>).</summary>
    public static readonly RemoteSubject[] Subjects = [new BindingsSubject(), new FaaSTubeSubject(NetworkIsolation.Process), new FaaSTubeSubject(NetworkIsolation.InProcess), new PeerFetchSubject()];

    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(5);

    /// <summary>
    /// The one-call-at-a-time floor's column: ucx_perftest tag_lat of the size (p50, half of a
    /// ping-pong of that size both ways: one message's way) plus tag_lat of 8 bytes (the answer's way).
    /// </summary>
    internal const string OneAtATime = "ucx_perftest one message and its answer at a time (tag_lat of the size + of 8 B)";

    public static async Task<int> RunAsync(string[] args)
    {
        var plan = new RemotePlan(
            [.. Text(args, "--sizes-mib", "1,16,64,256").Split(',').Select(s => long.Parse(s, CultureInfo.InvariantCulture) << 20)],
            Number(args, "--mib-per-size", 1024) << 20,
            (int)Number(args, "--latency-iterations", 20_000),
            (int)Number(args, "--latency-warmup", 2_000));
        string? output = Text(args, "--out", "");
        if (!UcxLibrary.TryLoad(out string? reason))
        {
            Console.Error.WriteLine($"remote-baseline: UCX is not available: {reason}");
            return 2;
        }

        string? perftest = Which("ucx_perftest");
        if (perftest is null)
        {
            Console.Error.WriteLine("remote-baseline: ucx_perftest is not installed (apt-get install ucx-utils)");
            return 2;
        }

        using var bed = NetworkNamespace.TryCreate(out reason);
        if (bed is null)
        {
            Console.Error.WriteLine($"remote-baseline: network namespaces cannot be made here: {reason}");
            return 2;
        }

        Console.Error.WriteLine($"remote-baseline: {bed.Name}, {bed.HostLink} {bed.HostAddress} <-> {bed.PeerLink} {bed.PeerAddress}, UCX {UcxLibrary.Version}");
        var rows = new List<RemoteRow>();
        foreach (long size in plan.Sizes)
        {
            rows.Add(await PerftestAsync(perftest, bed, "tag_bw", size, plan.CountOf(size), plan.WarmupOf(size)));
            rows.Add(await PerftestAsync(perftest, bed, "ucp_am_bw", size, plan.CountOf(size), plan.WarmupOf(size)));
        }

        var tagLatency = await PerftestAsync(perftest, bed, "tag_lat", 8, plan.LatencyIterations, plan.LatencyWarmup);
        rows.Add(tagLatency);
        foreach (long size in plan.Sizes)
        {
            // The floor of ONE call at a time (a message of the size, then a short answer): what a
            // FaaSTube Put or Get of that size, one at a time, compares with, next to the streams above.
            var pingPong = await PerftestAsync(perftest, bed, "tag_lat", size, Math.Max(4, plan.CountOf(size)), Math.Max(1, plan.WarmupOf(size)));
            rows.Add(new RemoteRow("ucx_perftest", "put", OneAtATime, size, size / (1024.0 * 1024.0) / ((pingPong.Value + tagLatency.Value) / 1e6)));
        }

        bool breakdown = args.Contains("--breakdown");
        using var spans = breakdown ? new WhereSpans() : null;
        var legs = new List<WhereLegs>();
        foreach (var subject in Subjects)
        {
            spans?.Clear();
            var (measured, stamps) = await MeasureFromPeerAsync(bed, subject, plan);
            rows.AddRange(measured);
            if (spans is not null && stamps.Count > 0)
            {
                legs.Add(WhereLegs.Of(measured.First(r => r.Test == "latency").What.Replace(", half the round trip", "", StringComparison.Ordinal), stamps, spans.Taken()));
            }
        }

        string report = Report(rows, plan, args, output) + WhereLegs.Report(legs);
        Console.WriteLine(report);
        if (!string.IsNullOrEmpty(output))
        {
            File.WriteAllText(output, report);
            SaveChart(rows, Path.ChangeExtension(output, ".svg"));
        }

        return 0;
    }

    /// <summary>"remote-baseline-peer SUBJECT ADDRESS PLAN...": in the peer namespace, measures one subject and prints its rows.</summary>
    public static async Task<int> PeerMainAsync(string[] args)
    {
        // The scenario holds our stdin: when it goes (killed), so do we, whatever is pending.
        var watch = new Thread(() =>
        {
            Console.In.ReadToEnd();
            Environment.Exit(3);
        }) { IsBackground = true };
        watch.Start();
        var subject = Subjects.Single(s => s.Name == args[0]);
        foreach (var row in await subject.MeasureAsync(args[1], RemotePlan.FromArgs(args[2..])))
        {
            Console.WriteLine(row.Serialize());
        }

        return 0;
    }

    private static async Task<(IReadOnlyList<RemoteRow> Rows, IReadOnlyList<(long Sent, long Answered)> Stamps)> MeasureFromPeerAsync(NetworkNamespace bed, RemoteSubject subject, RemotePlan plan)
    {
        await using var server = await subject.ServeAsync(bed.HostAddress, bed.HostLink);
        var self = Environment.ProcessPath!;
        string[] arguments = Path.GetFileNameWithoutExtension(self) == "dotnet"
            ? [typeof(RemoteBaselineScenario).Assembly.Location, "remote-baseline-peer", subject.Name, server.ConnectAddress, .. plan.ToArgs()]
            : ["remote-baseline-peer", subject.Name, server.ConnectAddress, .. plan.ToArgs()];
        var info = bed.Exec(self, arguments);
        info.Environment["UCX_TLS"] = "tcp";
        info.Environment["UCX_NET_DEVICES"] = bed.PeerLink;
        foreach (var (name, value) in server.Environment)
        {
            info.Environment[name] = value;
        }

        var (code, stdout, stderr) = await RunAsync(info);
        if (code != 0)
        {
            throw new InvalidOperationException($"the {subject.Name} peer failed ({code}): {stderr}");
        }

        var lines = stdout.Split('\n');
        return ([.. lines.Select(RemoteRow.Parse).OfType<RemoteRow>()],
            [.. lines.Select(RemoteStamp.Parse).OfType<(string Subject, long Sent, long Answered)>().Select(s => (s.Sent, s.Answered))]);
    }

    /// <summary>One ucx_perftest test: the server in the root namespace (waited for until it listens), the client in the peer's.</summary>
    private static async Task<RemoteRow> PerftestAsync(string perftest, NetworkNamespace bed, string test, long size, int count, int warmup)
    {
        int port = FreePort(bed.HostAddress);
        // Line-buffered (coreutils' stdbuf): ucx_perftest does not flush "Waiting for connection" into a pipe.
        var serverInfo = new ProcessStartInfo(Which("stdbuf") ?? throw new InvalidOperationException("stdbuf (coreutils) is not on PATH"), ["-oL", perftest, "-p", Inv(port)])
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        serverInfo.Environment["UCX_TLS"] = "tcp";
        serverInfo.Environment["UCX_NET_DEVICES"] = bed.HostLink;
        using var server = Process.Start(serverInfo)!;
        try
        {
            var serverErrors = server.StandardError.ReadToEndAsync();
            using (var listening = new CancellationTokenSource(Bound))
            {
                while (await server.StandardOutput.ReadLineAsync(listening.Token) is { } line && !line.Contains("Waiting for connection", StringComparison.Ordinal))
                {
                }
            }

            var serverOutput = server.StandardOutput.ReadToEndAsync();
            var client = bed.Exec(perftest, [bed.HostAddress.ToString(), "-p", Inv(port), "-t", test, "-s", Inv(size), "-n", Inv(count), "-w", Inv(warmup), "-f"]);
            client.Environment["UCX_TLS"] = "tcp";
            client.Environment["UCX_NET_DEVICES"] = bed.PeerLink;
            var (code, stdout, stderr) = await RunAsync(client);
            await server.WaitForExitAsync().WaitAsync(Bound);
            if (code != 0)
            {
                throw new InvalidOperationException($"ucx_perftest -t {test} -s {size} failed ({code}): {stdout}{stderr}; server: {await serverOutput}{await serverErrors}");
            }

            // -f prints the final numbers only: iterations, overhead/latency (50th percentile, average
            // of the last report interval, overall) in us, bandwidth (last interval, overall) in MB/s
            // (2^20 bytes), message rate (last interval, overall). A last interval can read "inf".
            var numbers = stdout.Split('\n').Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                .LastOrDefault(f => f.Length == 8 && f.All(x => x is "inf" or "-nan" or "nan" || double.TryParse(x, CultureInfo.InvariantCulture, out _)))
                ?? throw new InvalidOperationException($"no final line in ucx_perftest's output: {stdout}");
            double Field(int i) => double.Parse(numbers[i], CultureInfo.InvariantCulture);
            Console.Error.WriteLine($"ucx_perftest {test} {size}: {string.Join(' ', numbers)}");
            return test == "tag_lat"
                ? new RemoteRow("ucx_perftest", "latency", "ucx_perftest tag_lat", size, Field(1), Field(3))
                : new RemoteRow("ucx_perftest", "put", $"ucx_perftest {test}", size, Field(5));
        }
        finally
        {
            if (!server.HasExited)
            {
                server.Kill();
            }
        }
    }

    private static async Task<(int Code, string Stdout, string Stderr)> RunAsync(ProcessStartInfo info)
    {
        info.UseShellExecute = false;
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.RedirectStandardInput = true;
        using var process = Process.Start(info)!;
        try
        {
            using var cts = new CancellationTokenSource(Bound);
            var stdout = process.StandardOutput.ReadToEndAsync(cts.Token);
            var stderr = process.StandardError.ReadToEndAsync(cts.Token);
            await process.WaitForExitAsync(cts.Token);
            return (process.ExitCode, await stdout, await stderr);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }

    private static string Report(List<RemoteRow> rows, RemotePlan plan, string[] args, string? output)
    {
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"# Remote baseline: UCX over TCP across network namespaces ({DateTime.UtcNow:yyyy-MM-dd})");
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"- Command: `dotnet run -c Release --project bench/FaaSTube.Bench -- remote-baseline {string.Join(' ', args)}`");
        md.AppendLine(CultureInfo.InvariantCulture, $"- Device: {Environment.ProcessorCount} cores, no GPU (none used); UCX {UcxLibrary.Version}, UCX_TLS=tcp, UCX_NET_DEVICES = the veth end on each side; {File.ReadAllText("/proc/loadavg").Trim()} (/proc/loadavg after the run)");
        md.AppendLine(CultureInfo.InvariantCulture, $"- UCX progress threads (ours: bindings and FaaSTube, both sides) poll {FaaSTube.Native.Ucx.UcxWorker.DefaultSpinTime.TotalMicroseconds:0} us after their last event before they sleep (UcxWorker.SpinTime; FAASTUBE_UCX_SPIN_US={Environment.GetEnvironmentVariable("FAASTUBE_UCX_SPIN_US") ?? "unset"}); ucx_perftest busy-polls.");
        md.AppendLine(CultureInfo.InvariantCulture, $"- Per size and direction: {plan.BytesPerSize >> 20} MiB (at least 4 messages) after a tenth of that as warm-up; latency: {plan.LatencyIterations} round trips after {plan.LatencyWarmup}. Bindings: up to {BindingsSubject.Window} messages in flight. FaaSTube: a remote TubeClient (window {FaaSTubeSubject.WindowBytes >> 20} MiB) against a TubeNode (pool on the simulated GPU where there is none), one Put or Get at a time; its latency row is the Where control call.");
        md.AppendLine();
        md.AppendLine("Bandwidth, MiB/s (ucx_perftest's \"MB/s\" is 2^20 bytes per second). \"put\": the peer (client) sends to the root namespace; \"get\": the root namespace sends to the peer.");
        md.AppendLine();
        var bandwidth = rows.Where(r => r.Test != "latency").ToList();
        var columns = bandwidth.Select(r => r.What).Distinct().ToList();
        md.AppendLine("| size | " + string.Join(" | ", columns) + " |");
        md.AppendLine("| ---: | " + string.Join(" | ", columns.Select(_ => "---:")) + " |");
        foreach (long size in plan.Sizes)
        {
            md.Append(CultureInfo.InvariantCulture, $"| {size >> 20} MiB |");
            foreach (var column in columns)
            {
                var row = bandwidth.FirstOrDefault(r => r.What == column && r.Bytes == size);
                md.Append(row is null ? " - |" : string.Create(CultureInfo.InvariantCulture, $" {row.Value:0} |"));
            }

            md.AppendLine();
        }

        md.AppendLine();
        md.AppendLine("Latency, 8 bytes, one way (half the round trip), us:");
        md.AppendLine();
        md.AppendLine("| what | p50 | mean |");
        md.AppendLine("| --- | ---: | ---: |");
        foreach (var row in rows.Where(r => r.Test == "latency"))
        {
            md.AppendLine(CultureInfo.InvariantCulture, $"| {row.What} | {row.Value:0.0} | {row.Mean:0.0} |");
        }

        if (!string.IsNullOrEmpty(output))
        {
            md.AppendLine();
            md.AppendLine(CultureInfo.InvariantCulture, $"![bandwidth by size]({Path.GetFileName(Path.ChangeExtension(output, ".svg"))})");
        }

        return md.ToString();
    }

    private static void SaveChart(List<RemoteRow> rows, string path)
    {
        var plot = new Plot();
        var bandwidth = rows.Where(r => r.Test != "latency").ToList();
        var columns = bandwidth.Select(r => r.What).Distinct().ToList();
        var sizes = bandwidth.Select(r => r.Bytes).Distinct().Order().ToList();
        Color[] palette = [Colors.SteelBlue, Colors.LightSkyBlue, Colors.OrangeRed, Colors.Orange, Colors.SeaGreen, Colors.MediumPurple];
        var bars = new List<Bar>();
        var ticks = new List<Tick>();
        double width = 0.8 / columns.Count;
        for (int s = 0; s < sizes.Count; s++)
        {
            ticks.Add(new Tick(s + 0.4 - width / 2, $"{sizes[s] >> 20} MiB"));
            for (int c = 0; c < columns.Count; c++)
            {
                var row = bandwidth.FirstOrDefault(r => r.What == columns[c] && r.Bytes == sizes[s]);
                if (row is not null)
                {
                    bars.Add(new Bar { Position = s + c * width, Value = row.Value, Size = width * 0.9, FillColor = palette[c % palette.Length] });
                }
            }
        }

        plot.Add.Bars(bars);
        for (int c = 0; c < columns.Count; c++)
        {
            plot.Legend.ManualItems.Add(new LegendItem { LabelText = columns[c], FillColor = palette[c % palette.Length] });
        }

        plot.ShowLegend(Alignment.UpperLeft);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.ToArray());
        plot.Axes.Left.Label.Text = "MiB/s";
        plot.Title("UCX over TCP across network namespaces: bandwidth by message size");
        plot.Axes.Margins(bottom: 0);
        plot.SaveSvg(path, 1100, 560);
    }

    /// <summary>A TCP port free on <paramref name="at"/> now (ucx_perftest's server takes a port number).</summary>
    private static int FreePort(IPAddress at)
    {
        using var probe = new TcpListener(at, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    private static string? Which(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, program)).FirstOrDefault(File.Exists);

    private static string Text(string[] args, string name, string fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
    }

    private static long Number(string[] args, string name, long fallback) => long.Parse(Text(args, name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);

    private static string Inv(long value) => value.ToString(CultureInfo.InvariantCulture);
}
