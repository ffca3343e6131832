using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using FaaSTube.Channels;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Transport;
using FaaSTube.Kernels;
using FaaSTube.Platform;

namespace FaaSTube.Bench.Channels;

/// <summary>
/// A soak of the node (issue 15): mixed clients over its Unix socket for N seconds (Put/Get through
/// host memory, Allocate/Publish/Get on the GPU, Release, Delete, hostile frames, clients that go
/// away in the middle of a Put, connections that never finish their Hello), sampling the process's
/// RSS (node and clients share this process), the managed heap and the pool every second. Prints a
/// Markdown table, first/last/max, and the RSS slope after the first quarter (warm-up).
/// <code>dotnet run -c Release --project bench/FaaSTube.Bench -- node-soak --seconds 90 [--clients 4]</code>
/// </summary>
internal static class NodeSoakScenario
{
    private sealed record Sample(double Seconds, long RssKiB, long HeapKiB, long PoolInUse, long PoolReserved, int Blocks, int Sessions, long Ops);

    public static async Task<int> RunAsync(string[] args)
    {
        int seconds = Option(args, "--seconds", 90);
        int clients = Option(args, "--clients", 4);
        int seed = Option(args, "--seed", Environment.TickCount);
        string socket = Path.Combine(Path.GetTempPath(), $"ft-soak-{Environment.ProcessId}.sock");
        await using var node = await TubeNode.StartAsync(new TubeNodeOptions
        {
            SocketPath = socket,
            Pool = new() { SlabBytes = 16 << 20, FloorBytes = 0 },
            HelloTimeout = TimeSpan.FromSeconds(1),
        });
        var pool = node.PoolOf(0);
        var counters = new Counters();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var workers = Enumerable.Range(0, clients).Select(i => Task.Run(() => WorkerAsync(socket, new Random(seed + i), i, counters, stop.Token))).ToList();
        workers.Add(Task.Run(() => HalfHellosAsync(socket, counters, stop.Token)));

        var samples = new List<Sample>();
        var clock = Stopwatch.StartNew();
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        do
        {
            var s = pool.GetStatistics();
            samples.Add(new Sample(clock.Elapsed.TotalSeconds, RssKiB(), GC.GetTotalMemory(false) >> 10, s.InUseBytes, s.ReservedBytes, s.Blocks, node.SessionCount, Interlocked.Read(ref counters.Ops)));
        }
        while (await timer.WaitForNextTickAsync(CancellationToken.None) && !stop.IsCancellationRequested);

        await Task.WhenAll(workers);
        await CleanedUpAsync(node); // every client is gone: wait (bounded) for the node to report the last clean-up
        var final = pool.GetStatistics();
        samples.Add(new Sample(clock.Elapsed.TotalSeconds, RssKiB(), GC.GetTotalMemory(false) >> 10, final.InUseBytes, final.ReservedBytes, final.Blocks, node.SessionCount, Interlocked.Read(ref counters.Ops)));

        Console.WriteLine($"node-soak: {seconds} s, {clients} mixed clients + half-Hello connections, {node.Gpus.Backend} backend, seed {seed}");
        Console.WriteLine();
        Console.WriteLine("| t (s) | RSS (MiB) | managed heap (MiB) | pool in use (MiB) | pool reserved (MiB) | blocks | sessions | ops |");
        Console.WriteLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var s in samples)
        {
            Console.WriteLine($"| {s.Seconds:0} | {s.RssKiB / 1024.0:0.0} | {s.HeapKiB / 1024.0:0.0} | {s.PoolInUse / 1048576.0:0.00} | {s.PoolReserved / 1048576.0:0} | {s.Blocks} | {s.Sessions} | {s.Ops} |");
        }

        var steady = samples.Skip(samples.Count / 4).ToList();
        Console.WriteLine();
        Console.WriteLine($"RSS: first {samples[0].RssKiB / 1024.0:0.0} MiB, last {samples[^1].RssKiB / 1024.0:0.0} MiB, max {samples.Max(s => s.RssKiB) / 1024.0:0.0} MiB; slope after the first quarter {Slope(steady, s => s.RssKiB) / 1024.0 * 60:0.00} MiB/min");
        Console.WriteLine($"managed heap: first {samples[0].HeapKiB / 1024.0:0.0} MiB, last {samples[^1].HeapKiB / 1024.0:0.0} MiB, max {samples.Max(s => s.HeapKiB) / 1024.0:0.0} MiB; slope after the first quarter {Slope(steady, s => s.HeapKiB) / 1024.0 * 60:0.00} MiB/min");
        Console.WriteLine($"pool in use: first {samples[0].PoolInUse} B, last {samples[^1].PoolInUse} B (every client gone), max {samples.Max(s => s.PoolInUse) / 1048576.0:0.0} MiB; reserved max {samples.Max(s => s.PoolReserved) >> 20} MiB");
        Console.WriteLine($"operations {counters.Ops}: put/get {counters.PutGets}, allocate/publish/get {counters.Publishes}, deletes {counters.Deletes}, hostile frames {counters.Hostile} (all refused: {counters.Hostile == counters.HostileRefused}), abrupt disconnects {counters.Abrupt}, half Hellos {counters.HalfHellos}; checksum mismatches {counters.Mismatches}; unexpected errors {counters.Errors}");
        if (counters.FirstError is { } first)
        {
            Console.WriteLine($"first unexpected error: {first}");
        }

        return counters.Mismatches == 0 && counters.Errors == 0 && samples[^1].PoolInUse == 0 ? 0 : 1;
    }

    private sealed class Counters
    {
        public long Ops;
        public long PutGets;
        public long Publishes;
        public long Deletes;
        public long Hostile;
        public long HostileRefused;
        public long Abrupt;
        public long HalfHellos;
        public long Mismatches;
        public long Errors;
        public string? FirstError;
    }

    private static async Task WorkerAsync(string socket, Random random, int index, Counters c, CancellationToken stop)
    {
        var client = await ConnectAsync(socket, index);
        try
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    int op = random.Next(100);
                    if (op < 40)
                    {
                        var data = new byte[random.Next(1, 3 << 20)];
                        random.NextBytes(data);
                        var id = await client.PutAsync(data, new PutOptions { Consumers = 1 });
                        var back = new byte[data.Length];
                        await client.GetAsync(id, back.AsMemory());
                        Check(c, DataChecksum.Compute(back) == DataChecksum.Compute(data));
                        Interlocked.Increment(ref c.PutGets);
                    }
                    else if (op < 70)
                    {
                        long length = random.Next(1, 1 << 20);
                        ulong pattern = (ulong)random.NextInt64();
                        var buffer = await client.AllocateAsync(length);
                        using var stream = buffer.Device.CreateStream();
                        await stream.FillPatternAsync(buffer.Memory, pattern);
                        var id = await client.PublishAsync(buffer, stream, new PutOptions { Consumers = 2 });
                        await using (var got = await client.GetAsync(id))
                        {
                            var expected = new byte[length];
                            DataPattern.Fill(expected, pattern);
                            Check(c, await stream.ChecksumAsync(got.Memory) == DataChecksum.Compute(expected));
                        }

                        var host = new byte[length];
                        await client.GetAsync(id, host.AsMemory()); // the second consumer: released, freed
                        Interlocked.Increment(ref c.Publishes);
                    }
                    else if (op < 85)
                    {
                        var id = await client.PutAsync(new byte[random.Next(1, 1 << 20)], new PutOptions { Consumers = 5 });
                        await using (await client.GetAsync(id))
                        {
                            await client.DeleteAsync(id); // the held lease keeps it until released
                        }

                        Interlocked.Increment(ref c.Deletes);
                    }
                    else if (op < 95)
                    {
                        await HostileAsync(client, random, c);
                    }
                    else
                    {
                        await AbruptPutAsync(socket, random);
                        Interlocked.Increment(ref c.Abrupt);
                    }

                    Interlocked.Increment(ref c.Ops);
                }
                catch (Exception e) when (e is TubeException or TubeNodeUnavailableException or IOException or SocketException)
                {
                    Interlocked.Increment(ref c.Errors);
                    Interlocked.CompareExchange(ref c.FirstError, $"{e.GetType().Name}: {e.Message}", null);
                }
            }
        }
        finally
        {
            await client.DisposeAsync();
        }
    }

    /// <summary>
    /// A client that goes away in the middle of a Put: a handshake by hand (a sealed memfd window),
    /// PutBegin of 4 MiB, some of its parts on the wire, then the connection closes without waiting.
    /// (Not a <see cref="TubeClient"/> disposed under its own Put: that crashes the disposing process,
    /// see bench/results/2026-12-01-hostile-clients-simulated.md.)
    /// </summary>
    private static async Task AbruptPutAsync(string socket, Random random)
    {
        const int Window = 1 << 20;
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await s.ConnectAsync(new UnixDomainSocketEndPoint(socket));
        var window = SealedSharedMemory.Create(Window);
        try
        {
            UnixRights.Send(s, Frames.Encode(FrameType.Hello, 1, new PayloadWriter().U16(Frames.Version).Str("soak-abrupt").Str("abrupt").I64(Window).Memory.Span), window.Descriptor);
            await ReadFrameAsync(s); // Ok
            await s.SendAsync(Frames.Encode(FrameType.PutBegin, 2, new PayloadWriter().I64(4 << 20).I32(0).Memory.Span));
            var begin = await ReadFrameAsync(s);
            if (begin[4] != (byte)FrameType.Ok)
            {
                return;
            }

            var id = new PayloadReader(begin.AsSpan(9)).Id();
            int parts = random.Next(0, 4);
            for (int i = 0; i < parts; i++)
            {
                await s.SendAsync(Frames.Encode(FrameType.PutPart, (uint)(3 + i), new PayloadWriter().Id(id).I64((long)i * Window).I32(0).I32(Window).Str("").I64(0).Memory.Span));
            }
        }
        finally
        {
            s.Close(); // gone, with parts in flight
            ((IDisposable)window).Dispose();
        }
    }

    private static async Task<byte[]> ReadFrameAsync(Socket s)
    {
        var header = new byte[4];
        await FillAsync(s, header);
        var frame = new byte[4 + BitConverter.ToInt32(header)];
        header.CopyTo(frame, 0);
        await FillAsync(s, frame.AsMemory(4));
        return frame;
    }

    private static async Task FillAsync(Socket s, Memory<byte> into)
    {
        for (int n = 0; n < into.Length;)
        {
            int got = await s.ReceiveAsync(into[n..]);
            n += got > 0 ? got : throw new IOException("the node closed the connection");
        }
    }

    /// <summary>A few frames the node must refuse: made-up ids, truncated payloads, unknown and node-only types, leases not held, slabs never opened.</summary>
    private static async Task HostileAsync(TubeClient client, Random random, Counters c)
    {
        var id = TubeId.NewId();
        (FrameType, PayloadWriter)[] frames =
        [
            (FrameType.Get, new PayloadWriter().Id(id).I32(0)),
            (FrameType.PutPart, new PayloadWriter().Id(id).I64(0)),
            ((FrameType)(13 + random.Next(100)), new PayloadWriter().I64(random.NextInt64())),
            (FrameType.CloseSlab, new PayloadWriter().I32(0).I32(0).I32(0)),
            (FrameType.Release, new PayloadWriter().Id(id)),
            (FrameType.SlabClosed, new PayloadWriter().I32(0).I32(random.Next(1000, 2000)).I32(1)),
            (FrameType.PutCommit, new PayloadWriter().Id(id).I32(1).I64(-1).U8(0)),
            (FrameType.PutBegin, new PayloadWriter().I64(-5).I32(0)),
        ];
        foreach (var (type, payload) in frames)
        {
            Interlocked.Increment(ref c.Hostile);
            try
            {
                await client.CallRawAsync(type, payload);
            }
            catch (TubeException)
            {
                Interlocked.Increment(ref c.HostileRefused);
            }
        }
    }

    /// <summary>Connections that send half a Hello and hang up, or wait for the Hello timeout.</summary>
    private static async Task HalfHellosAsync(string socket, Counters c, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), stop);
                await s.SendAsync(new byte[] { 40, 0, 0, 0, 1, 1, 0, 0, 0, 2, 0 }, stop);
                s.Shutdown(SocketShutdown.Send);
                var buffer = new byte[256];
                while (await s.ReceiveAsync(buffer, stop) > 0)
                {
                    // the node's refusal, then its close
                }

                Interlocked.Increment(ref c.HalfHellos);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException)
            {
                // stopping, or reset by the node
            }
        }
    }

    /// <summary>Waits (10 s at most, on session ends and the 1 s TTL sweeper) until the node's pool holds nothing: a leak shows in the last row.</summary>
    private static async Task CleanedUpAsync(TubeNode node)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            void OnEnded(long _) => ended.TrySetResult();
            node.SessionEnded += OnEnded;
            try
            {
                if (node.PoolOf(0).GetStatistics().InUseBytes == 0 && node.SessionCount == 0)
                {
                    return;
                }

                await Task.WhenAny(ended.Task, Task.Delay(TimeSpan.FromMilliseconds(500), timeout.Token)); // also the sweeper: expired data goes without a session ending
                timeout.Token.ThrowIfCancellationRequested();
            }
            catch (OperationCanceledException)
            {
                return;
            }
            finally
            {
                node.SessionEnded -= OnEnded;
            }
        }
    }

    private static void Check(Counters c, bool same)
    {
        if (!same)
        {
            Interlocked.Increment(ref c.Mismatches);
        }
    }

    private static Task<TubeClient> ConnectAsync(string socket, int index) =>
        TubeClient.ConnectAsync(new TubeClientOptions { SocketPath = socket, Workflow = $"soak{index % 2}", Function = $"worker{index}", WindowBytes = 2 << 20 });

    /// <summary>VmRSS of this process (node and clients), KiB; 0 where /proc is not there.</summary>
    private static long RssKiB()
    {
        if (!File.Exists("/proc/self/status"))
        {
            return 0;
        }

        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return line is null ? 0 : long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
    }

    /// <summary>Least-squares slope of <paramref name="value"/> per second.</summary>
    private static double Slope(List<Sample> samples, Func<Sample, long> value)
    {
        if (samples.Count < 2)
        {
            return 0;
        }

        double mx = samples.Average(s => s.Seconds), my = samples.Average(s => (double)value(s));
        double num = samples.Sum(s => (s.Seconds - mx) * (value(s) - my));
        double den = samples.Sum(s => (s.Seconds - mx) * (s.Seconds - mx));
        return den == 0 ? 0 : num / den;
    }

    private static int Option(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    }
}
