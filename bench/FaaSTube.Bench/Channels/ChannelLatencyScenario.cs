using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net.Sockets;
using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Diagnostics;
using static FaaSTube.Bench.Channels.SocketPingPong;

namespace FaaSTube.Bench.Channels;

/// <summary>
/// Issue 11's latency targets, each beside its baseline in the same run. The node runs in this
/// process; clients run in child processes (this program as "channel-latency-peer").
/// <list type="bullet">
/// <item>Baseline: a 64-byte ping-pong over a blocking Unix socket between two processes, blocking
/// calls on a dedicated thread in each (<see cref="SocketPingPong"/>, as control-floor), measured
/// before and after the rest; the two halves pooled are the baseline.</item>
/// <item>Control call: <c>WhereAsync</c> of a published id, sequential (one in flight), from a
/// child process's client over the control ring (64 KiB), over the socket (ring 0), and for reference
/// from an in-process client (direct call).</item>
/// <item>Handoff: a producer process allocates 64 MiB, fills it on a stream and synchronises (not
/// timed), tells the parent the id; a consumer process calls <c>GetAsync(id)</c>, which the node
/// parks until the publish (the parent sees it parked through the node's TimeProvider: the Get's
/// wait timer of the consumer's distinctive PublishWait); then the producer takes
/// <see cref="Stopwatch.GetTimestamp"/> and publishes, and the consumer takes it again when it holds
/// the mapped buffer. Both are CLOCK_MONOTONIC on Linux, one clock for every process of the machine;
/// the timestamps come back over the children's stdout after the fact. Over the ring and the socket.</item>
/// <item>Arena: the same handoff with the producer on an arena (its allocations carved from a range
/// it holds); and the producer's critical path, <c>AllocateAsync</c> + <c>PublishAsync</c> of 1 MiB
/// from a child process, without an arena (Allocate is a round trip) and with one, in the same run.</item>
/// </list>
/// <code>FAASTUBE_BACKEND=simulated dotnet run -c Release --project bench/FaaSTube.Bench -- channel-latency [--quick] [--breakdown] [--pings 10000] [--calls 5000] [--handoffs 200] [--mib 64] [--critical 2000] [--critical-kib 1024]</code>
/// <c>--quick</c> (or FAASTUBE_BENCH_SIZES set, as in CI) cuts every count to a smoke run.
/// <c>--breakdown</c> also splits the child's calls at the node's own start and end of each request
/// (its <c>faastube.node.request.duration</c> measurements, heard with a MeterListener in this, the
/// node's, process: the listener's cost is in those runs' numbers).
/// </summary>
internal static class ChannelLatencyScenario
{
    private const int RingBytes = 64 << 10;
    private const int PingBytes = 64;

    /// <summary>The consumer's PublishWait: the node's wait timer of exactly this length is a Get parked for a publish.</summary>
    private static readonly TimeSpan ParkedWait = TimeSpan.FromMilliseconds(20_500);

    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    public static async Task<int> RunAsync(string[] args)
    {
        bool quick = args.Contains("--quick") || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("FAASTUBE_BENCH_SIZES"));
        using var nodeCalls = args.Contains("--breakdown") ? new NodeCalls() : null;
        int pings = Option(args, "--pings", quick ? 2_000 : 10_000); // per half of the baseline
        int calls = Option(args, "--calls", quick ? 500 : 5_000);
        int handoffs = Option(args, "--handoffs", quick ? 10 : 200);
        long bytes = (long)Option(args, "--mib", 64) << 20;
        int pingWarmup = Math.Max(200, pings / 10), callWarmup = Math.Max(100, calls / 5), handoffWarmup = quick ? 2 : 10;
        string load = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "?";

        string nodeSocket = Path.Combine(Path.GetTempPath(), $"ft-latency-{Environment.ProcessId}.sock");
        var parked = new ParkedGets(ParkedWait);
        await using var node = await TubeNode.StartAsync(new TubeNodeOptions
        {
            SocketPath = nodeSocket,
            Pool = new() { SlabBytes = Math.Max(256L << 20, 2 * bytes) },
        }, loggerFactory: null, timeProvider: parked);
        var backend = node.Gpus.Backend;
        var device = node.Gpus.Devices[0];

        // 1. The baseline, first half.
        using var echo = new EchoPeer(2 * (pingWarmup + pings));
        var baselineBefore = OnThread(() => Pings(echo.Connection, pingWarmup, pings, PingBytes));

        // 2. Where from a child process (ring, then socket), and in process.
        await using var owner = await TubeClient.ConnectInProcessAsync(node, new TubeClientOptions { Workflow = "bench", Function = "owner" });
        using var ownerStream = device.CreateStream();
        var small = await owner.AllocateAsync(4096);
        var whereId = await owner.PublishAsync(small, ownerStream, new PutOptions { KeepUntilDeleted = true });
        await owner.FlushAsync();
        var whereRing = await WhereInChildAsync(nodeSocket, backend, RingBytes, whereId, callWarmup, calls, nodeCalls);
        var whereSocket = await WhereInChildAsync(nodeSocket, backend, 0, whereId, callWarmup, calls, nodeCalls);
        var whereDirect = new double[calls];
        for (int i = -callWarmup; i < calls; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            await owner.WhereAsync(whereId);
            double us = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            if (i >= 0)
            {
                whereDirect[i] = us;
            }
        }

        // 3. The handoff across processes (ring, then socket).
        var handoffRing = await HandoffAsync(nodeSocket, backend, RingBytes, bytes, parked, handoffWarmup, handoffs, nodeCalls);
        var handoffSocket = await HandoffAsync(nodeSocket, backend, 0, bytes, parked, handoffWarmup, handoffs, nodeCalls);
        long arenaBytes = 2 * bytes + (bytes >> 1); // two handoffs a range, the next leased ahead (issue 11's arena)
        var handoffArena = await HandoffAsync(nodeSocket, backend, RingBytes, bytes, parked, handoffWarmup, handoffs, nodeCalls, arenaBytes);

        // 4. The producer's critical path, Allocate + Publish, without and with the arena (ring).
        int criticalCount = Option(args, "--critical", quick ? 200 : 2_000);
        long criticalBytes = (long)Option(args, "--critical-kib", 1024) << 10;
        var critical = await CriticalPathAsync(nodeSocket, backend, criticalBytes, 0, callWarmup, criticalCount);
        var criticalArena = await CriticalPathAsync(nodeSocket, backend, criticalBytes, 32 * criticalBytes, callWarmup, criticalCount);

        // 1'. The baseline, second half: the machine's state at the end of the run as at its start.
        var baselineAfter = OnThread(() => Pings(echo.Connection, pingWarmup, pings, PingBytes));
        double[] baseline = [.. baselineBefore, .. baselineAfter];
        string loadAfter = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "?";

        double b50 = Percentile(baseline, 0.5);
        Console.WriteLine($"channel-latency: {backend} backend, {Environment.ProcessorCount} cores; baseline {2 * pings} round trips ({pings} before and {pings} after the rest, {pingWarmup} warm-up each); " +
            $"Where {calls} calls after {callWarmup} warm-up; handoff {bytes >> 20} MiB x {handoffs} after {handoffWarmup} warm-up");
        Console.WriteLine($"load average before: {load}; after: {loadAfter}");
        Console.WriteLine();
        Console.WriteLine("| path | p50 us | p99 us | p50 / baseline p50 | target | met? |");
        Console.WriteLine("| --- | ---: | ---: | ---: | --- | --- |");
        Row("baseline: 64 B blocking Unix-socket ping-pong, two processes, dedicated threads", baseline, b50, null);
        Row("Where, child process, control ring (64 KiB)", whereRing.Times, b50, 0.25);
        Row("Where, child process, socket (ControlRingBytes = 0)", whereSocket.Times, b50, 1.5);
        Row("Where, in process (direct call; reference)", whereDirect, b50, null);
        Row($"{bytes >> 20} MiB handoff, publish -> consumer holds mapping, control ring", handoffRing.Latency, b50, 1.0);
        Row($"{bytes >> 20} MiB handoff, publish -> consumer holds mapping, socket", handoffSocket.Latency, b50, 1.0);
        Row($"{bytes >> 20} MiB handoff, publish -> consumer holds mapping, control ring, producer on an arena of {arenaBytes >> 20} MiB", handoffArena.Latency, b50, 1.0);
        Row($"producer's Allocate + Publish of {criticalBytes >> 10} KiB, control ring, no arena (a round trip)", critical.Times, b50, null);
        Row($"producer's Allocate + Publish of {criticalBytes >> 10} KiB, control ring, arena of {32 * criticalBytes >> 20} MiB ({criticalArena.Leases} leases in {criticalCount + callWarmup} allocations)", criticalArena.Times, b50, null);
        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"arena: the producer's Allocate + Publish p50 {Percentile(criticalArena.Times, 0.5):0.0} us with, {Percentile(critical.Times, 0.5):0.0} us without ({Percentile(critical.Times, 0.5) / Percentile(criticalArena.Times, 0.5):0.0}x); the handoff's PublishAsync call p50 {Percentile(handoffArena.PublishCall, 0.5):0.0} us"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"baseline halves: p50 {Percentile(baselineBefore, 0.5):0.0} us before, {Percentile(baselineAfter, 0.5):0.0} us after; p99 {Percentile(baselineBefore, 0.99):0.0} / {Percentile(baselineAfter, 0.99):0.0} us"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"producer's PublishAsync call (returns once posted): p50 {Percentile(handoffRing.PublishCall, 0.5):0.0} us ring, {Percentile(handoffSocket.PublishCall, 0.5):0.0} us socket; " +
            $"of which synchronising the idle stream (measured after, alone): p50 {Percentile(handoffRing.IdleSync, 0.5):0.0} / {Percentile(handoffSocket.IdleSync, 0.5):0.0} us; every Get's path: {string.Join(", ", handoffRing.Paths.Concat(handoffSocket.Paths).Distinct())}"));
        if (nodeCalls is not null)
        {
            Console.WriteLine();
            Console.WriteLine("Breakdown at the node's start and end of each request (p50 of each leg, us; legs' p50s need not add up to the total's):");
            Console.WriteLine();
            Console.WriteLine("| path | client send -> node starts | node executes | node ends -> client has the answer | total |");
            Console.WriteLine("| --- | ---: | ---: | ---: | ---: |");
            Legs("Where, control ring", whereRing.Legs);
            Legs("Where, socket", whereSocket.Legs);
            Console.WriteLine();
            Console.WriteLine("| path | publish called -> node applied it | node applied -> parked Get answered | Get answered -> consumer holds mapping | total |");
            Console.WriteLine("| --- | ---: | ---: | ---: | ---: |");
            Legs("handoff, control ring", handoffRing.Legs);
            Legs("handoff, socket", handoffSocket.Legs);
        }

        return 0;
    }

    /// <summary>The peers: "echo PATH COUNT BYTES", "where SOCKET BACKEND RING ID WARMUP CALLS", "producer SOCKET BACKEND RING BYTES", "consumer SOCKET BACKEND RING".</summary>
    public static async Task<int> PeerMainAsync(string[] args)
    {
        switch (args[0])
        {
            case "echo":
            {
                using var connection = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                connection.Connect(new UnixDomainSocketEndPoint(args[1]));
                Echo(connection, int.Parse(args[2], CultureInfo.InvariantCulture), int.Parse(args[3], CultureInfo.InvariantCulture));
                return 0;
            }

            case "where":
            {
                await using var client = await ConnectAsync(args, "where");
                var id = TubeId.Parse(args[4]);
                int warmup = int.Parse(args[5], CultureInfo.InvariantCulture), calls = int.Parse(args[6], CultureInfo.InvariantCulture);
                var times = new (long Start, long End)[calls];
                for (int i = -warmup; i < calls; i++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    await client.WhereAsync(id);
                    long t1 = Stopwatch.GetTimestamp();
                    if (i >= 0)
                    {
                        times[i] = (t0, t1);
                    }
                }

                Console.WriteLine(string.Join(' ', times.Select(t => $"{Invariant(t.Start)}:{Invariant(t.End)}")));
                return 0;
            }

            case "producer":
            {
                long arena = args.Length > 5 ? long.Parse(args[5], CultureInfo.InvariantCulture) : 0;
                await using var client = await ConnectAsync(args, "producer", arena);
                long bytes = long.Parse(args[4], CultureInfo.InvariantCulture);
                using var stream = client.Gpus.Devices[0].CreateStream();
                TubeBuffer? pending = null;
                long published = 0, returned = 0;
                int n = 0;
                Console.WriteLine("ready");
                while (await Console.In.ReadLineAsync() is { } line)
                {
                    switch (line)
                    {
                        case "alloc": // allocate and write, before the clock
                            pending = await client.AllocateAsync(bytes);
                            await stream.FillAsync(pending.Memory, (byte)++n);
                            await stream.SynchronizeAsync();
                            await client.FlushAsync(); // not timed: every scenario's allocation is on the node before the consumer asks
                            Console.WriteLine(pending.Id);
                            break;
                        case var critical when critical.StartsWith("critical ", StringComparison.Ordinal):
                        {
                            // The producer's critical path: AllocateAsync + PublishAsync (its stream idle: the data
                            // is written), timed; then, not timed, this process consumes it (Get, dispose, flush) so
                            // the pool does not fill. "critical WARMUP COUNT SIZE".
                            var parts = critical.Split(' ');
                            int warmup = int.Parse(parts[1], CultureInfo.InvariantCulture), count = int.Parse(parts[2], CultureInfo.InvariantCulture);
                            long size = long.Parse(parts[3], CultureInfo.InvariantCulture);
                            var times = new double[count];
                            for (int i = -warmup; i < count; i++)
                            {
                                long t0 = Stopwatch.GetTimestamp();
                                var buffer = await client.AllocateAsync(size);
                                var id = await client.PublishAsync(buffer, stream);
                                double us = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
                                if (i >= 0)
                                {
                                    times[i] = us;
                                }

                                await (await client.GetAsync(id)).DisposeAsync();
                                await client.FlushAsync();
                            }

                            Console.WriteLine($"{string.Join(' ', times.Select(t => t.ToString("0.###", CultureInfo.InvariantCulture)))} leases {client.Arena?.Leases ?? 0}");
                            break;
                        }

                        case "publish": // no output now: nothing of this process's runs while the consumer wakes
                            published = Stopwatch.GetTimestamp();
                            await client.PublishAsync(pending!, stream);
                            returned = Stopwatch.GetTimestamp();
                            break;
                        case "times": // and, for the breakdown, what synchronising the idle stream alone costs now (its worker asleep, as at the publish)
                            long synced = Stopwatch.GetTimestamp();
                            await stream.SynchronizeAsync();
                            synced = Stopwatch.GetTimestamp() - synced;
                            Console.WriteLine($"{Invariant(published)} {Invariant(returned)} {Invariant(synced)}");
                            break;
                    }
                }

                return 0;
            }

            case "consumer":
            {
                await using var client = await ConnectAsync(args, "consumer");
                Console.WriteLine("ready");
                while (await Console.In.ReadLineAsync() is { } line)
                {
                    var get = client.GetAsync(TubeId.Parse(line)); // on its way (or queued in order) when this returns
                    Console.WriteLine("asked");
                    var buffer = await get;
                    long held = Stopwatch.GetTimestamp();
                    var path = buffer.Path;
                    await buffer.DisposeAsync();
                    await client.FlushAsync(); // the release applied before the next allocation: the block is reused, no new slab
                    Console.WriteLine($"{Invariant(held)} {path}");
                }

                return 0;
            }

            default:
                throw new ArgumentException($"unknown peer mode {args[0]}");
        }
    }

    private static Task<TubeClient> ConnectAsync(string[] args, string function, long arenaBytes = 0) =>
        TubeClient.ConnectAsync(new TubeClientOptions
        {
            ArenaBytes = arenaBytes,
            SocketPath = args[1],
            Workflow = "bench",
            Function = function,
            Gpus = new GpuSystemOptions { Backend = Enum.Parse<GpuBackend>(args[2]) },
            ControlRingBytes = int.Parse(args[3], CultureInfo.InvariantCulture),
            PublishWait = ParkedWait,
            CallTimeout = Bound,
        });

    /// <summary>Where from a child process: each call's time (us), and with <paramref name="nodeCalls"/> its three legs at the node's start and end of the request.</summary>
    private static async Task<(double[] Times, double[][]? Legs)> WhereInChildAsync(string socket, GpuBackend backend, int ringBytes, TubeId id, int warmup, int calls, NodeCalls? nodeCalls)
    {
        nodeCalls?.Clear();
        using var child = Peer.Start("where", socket, backend.ToString(), Invariant(ringBytes), id.ToString(), Invariant(warmup), Invariant(calls));
        var line = await child.ReadLineAsync();
        var pairs = line.Split(' ').Select(p => p.Split(':')).Select(p => (Start: long.Parse(p[0], CultureInfo.InvariantCulture), End: long.Parse(p[1], CultureInfo.InvariantCulture))).ToArray();
        double[] times = [.. pairs.Select(p => Us(p.End - p.Start))];
        if (nodeCalls is null)
        {
            return (times, null);
        }

        var node = nodeCalls.Take("where");
        if (node.Length != warmup + calls)
        {
            Console.Error.WriteLine($"channel-latency: the node recorded {node.Length} Where calls, not {warmup + calls}: no breakdown");
            return (times, null);
        }

        node = node[warmup..];
        return (times, [.. pairs.Select((p, i) => new[] { Us(node[i].Start - p.Start), Us(node[i].End - node[i].Start), Us(p.End - node[i].End), Us(p.End - p.Start) })]);
    }

    private static double Us(long ticks) => ticks * 1e6 / Stopwatch.Frequency;

    /// <summary>The producer's Allocate + Publish (us each) from a child process over the control ring, with an arena of <paramref name="arenaBytes"/> (0: none), and the arena's leases.</summary>
    private static async Task<(double[] Times, int Leases)> CriticalPathAsync(string socket, GpuBackend backend, long size, long arenaBytes, int warmup, int count)
    {
        using var producer = Peer.Start("producer", socket, backend.ToString(), Invariant(RingBytes), Invariant(size), Invariant(arenaBytes));
        await producer.ExpectAsync("ready");
        var line = (await producer.AskAsync($"critical {Invariant(warmup)} {Invariant(count)} {Invariant(size)}")).Split(' ');
        return ([.. line[..^2].Select(t => double.Parse(t, CultureInfo.InvariantCulture))], int.Parse(line[^1], CultureInfo.InvariantCulture));
    }

    private static async Task<(double[] Latency, double[] PublishCall, double[] IdleSync, string[] Paths, double[][]? Legs)> HandoffAsync(
        string socket, GpuBackend backend, int ringBytes, long bytes, ParkedGets parked, int warmup, int handoffs, NodeCalls? nodeCalls, long arenaBytes = 0)
    {
        using var producer = Peer.Start("producer", socket, backend.ToString(), Invariant(ringBytes), Invariant(bytes), Invariant(arenaBytes));
        using var consumer = Peer.Start("consumer", socket, backend.ToString(), Invariant(ringBytes));
        await producer.ExpectAsync("ready");
        await consumer.ExpectAsync("ready");
        var latency = new double[handoffs];
        var publishCall = new double[handoffs];
        var idleSync = new double[handoffs];
        var paths = new HashSet<string>();
        var legs = new List<double[]>();
        for (int i = -warmup; i < handoffs; i++)
        {
            string id = await producer.AskAsync("alloc");
            await consumer.WriteLineAsync(id);
            await consumer.ExpectAsync("asked");
            if (!await parked.WaitAsync(Bound))
            {
                throw new TimeoutException("the consumer's Get never waited on the node");
            }

            nodeCalls?.Clear();
            await producer.WriteLineAsync("publish");
            var held = (await consumer.ReadLineAsync()).Split(' ');
            var published = (await producer.AskAsync("times")).Split(' ');
            long t0 = long.Parse(published[0], CultureInfo.InvariantCulture), returned = long.Parse(published[1], CultureInfo.InvariantCulture);
            long t1 = long.Parse(held[0], CultureInfo.InvariantCulture);
            if (i >= 0)
            {
                latency[i] = (t1 - t0) * 1e6 / Stopwatch.Frequency;
                publishCall[i] = (returned - t0) * 1e6 / Stopwatch.Frequency;
                idleSync[i] = Us(long.Parse(published[2], CultureInfo.InvariantCulture));
                paths.Add(held[1]);
                if (nodeCalls is not null && nodeCalls.Take("publish") is [var applied] && nodeCalls.Take("get") is [var answered])
                {
                    legs.Add([Us(applied.End - t0), Us(answered.End - applied.End), Us(t1 - answered.End), Us(t1 - t0)]);
                }
            }
        }

        return (latency, publishCall, idleSync, [.. paths], nodeCalls is null ? null : [.. legs]);
    }

    private static void Row(string path, double[] times, double baselineP50, double? target)
    {
        double p50 = Percentile(times, 0.50), p99 = Percentile(times, 0.99), ratio = p50 / baselineP50;
        string goal = target is { } t ? string.Create(CultureInfo.InvariantCulture, $"<= {t:0.##}x") : "-";
        string met = target is { } limit ? ratio <= limit ? "yes" : string.Create(CultureInfo.InvariantCulture, $"no ({ratio / limit:0.0}x over)") : "-";
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {path} | {p50:0.0} | {p99:0.0} | {ratio:0.00}x | {goal} | {met} |"));
    }

    private static void Legs(string path, double[][]? legs)
    {
        if (legs is not { Length: > 0 })
        {
            Console.WriteLine($"| {path} | - | - | - | - |");
            return;
        }

        var p50 = Enumerable.Range(0, 4).Select(k => Percentile([.. legs.Select(l => l[k])], 0.5).ToString("0.0", CultureInfo.InvariantCulture));
        Console.WriteLine($"| {path} | {string.Join(" | ", p50)} |");
    }

    /// <summary>The node's requests as its own call-duration histogram records them (at each request's end, on the node's thread): op, start and end timestamps.</summary>
    private sealed class NodeCalls : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly ConcurrentQueue<(string Op, long Start, long End)> _calls = new();

        public NodeCalls()
        {
            Instrument duration = ChannelMetrics.For(meterFactory: null).RequestDuration; // created before the listener starts: it is then among the instruments it is shown
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (ReferenceEquals(instrument, duration))
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<double>((_, seconds, tags, _) =>
            {
                long end = Stopwatch.GetTimestamp();
                string op = "?";
                foreach (var tag in tags)
                {
                    if (tag.Key == TelemetryTags.Operation)
                    {
                        op = tag.Value as string ?? "?";
                    }
                }

                _calls.Enqueue((op, end - (long)(seconds * Stopwatch.Frequency), end));
            });
            _listener.Start();
        }

        public void Clear() => _calls.Clear();

        /// <summary>The calls of <paramref name="op"/> recorded since the last <see cref="Clear"/>, in order; the rest stay.</summary>
        public (long Start, long End)[] Take(string op) => [.. _calls.Where(c => c.Op == op).Select(c => (c.Start, c.End))];

        public void Dispose() => _listener.Dispose();
    }

    /// <summary>
    /// The node's clock, as the system's, that also counts the Gets parked for a publish: the node
    /// waits for an unpublished id with a timer of the Get's wait, which the consumer sets to
    /// <see cref="ParkedWait"/>, a length nothing else uses.
    /// </summary>
    private sealed class ParkedGets(TimeSpan marker) : TimeProvider
    {
        private readonly SemaphoreSlim _parked = new(0);

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var timer = base.CreateTimer(callback, state, dueTime, period);
            if (dueTime == marker)
            {
                _parked.Release();
            }

            return timer;
        }

        public Task<bool> WaitAsync(TimeSpan timeout) => _parked.WaitAsync(timeout);
    }

    /// <summary>The baseline's peer process, connected: it echoes a fixed number of messages on a dedicated thread.</summary>
    private sealed class EchoPeer : IDisposable
    {
        private readonly Process _process;

        public EchoPeer(int count)
        {
            string path = Path.Combine(Path.GetTempPath(), $"ft-latency-echo-{Environment.ProcessId}.sock");
            File.Delete(path);
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(1);
            _process = Process.Start(Child("channel-latency-peer", "echo", path, Invariant(count), Invariant(PingBytes))) ?? throw new InvalidOperationException("the echo peer did not start");
            Connection = listener.AcceptAsync().WaitAsync(Bound).GetAwaiter().GetResult();
            File.Delete(path);
        }

        public Socket Connection { get; }

        public void Dispose()
        {
            Connection.Dispose();
            if (!_process.WaitForExit(30_000))
            {
                _process.Kill();
            }

            _process.Dispose();
        }
    }

    /// <summary>A client child process, spoken to line by line over its stdin and stdout (its stderr is this process's).</summary>
    private sealed class Peer : IDisposable
    {
        private readonly Process _process;

        private Peer(Process process) => _process = process;

        public static Peer Start(params string[] args)
        {
            var info = Child(["channel-latency-peer", .. args]);
            info.RedirectStandardInput = true;
            info.RedirectStandardOutput = true;
            return new Peer(Process.Start(info) ?? throw new InvalidOperationException($"the {args[0]} peer did not start"));
        }

        public async Task WriteLineAsync(string line)
        {
            await _process.StandardInput.WriteLineAsync(line);
            await _process.StandardInput.FlushAsync();
        }

        public async Task<string> ReadLineAsync() =>
            await _process.StandardOutput.ReadLineAsync().WaitAsync(Bound) ?? throw new InvalidOperationException($"a peer exited (code {(_process.HasExited ? _process.ExitCode : -1)})");

        public async Task<string> AskAsync(string line)
        {
            await WriteLineAsync(line);
            return await ReadLineAsync();
        }

        public async Task ExpectAsync(string expected)
        {
            string line = await ReadLineAsync();
            if (line != expected)
            {
                throw new InvalidOperationException($"a peer said '{line}', not '{expected}'");
            }
        }

        public void Dispose()
        {
            _process.StandardInput.Close();
            if (!_process.WaitForExit(30_000))
            {
                _process.Kill();
            }

            _process.Dispose();
        }
    }
}
