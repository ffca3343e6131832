using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using FaaSTube.Channels;

namespace FaaSTube.Bench.Remote;

/// <summary>
/// FaaSTube's own remote path: a <see cref="TubeNode"/> in the root namespace listening on the
/// link's host address (NetworkListen, UCX kept to the link), and a remote <see cref="TubeClient"/>
/// in the peer namespace (<c>ucx://host:port</c>, the workflow's secret from the environment, never
/// the command line). "put": Put from host memory of each size, one at a time (each Put pipelines
/// its parts, at most the window's slots in flight, each sent from the caller's memory straight into
/// the node's window; the Delete after each is not timed); "get": Get to host
/// memory of one datum of that size, again and again. "latency": the Where control call, half its
/// round trip (as ucx_perftest's tag_lat is half of its).
/// </summary>
/// <param name="isolation">Where the node runs UCX: in its network gateway (the default) or in its own process; both are measured in one run.</param>
internal sealed class FaaSTubeSubject(NetworkIsolation isolation) : RemoteSubject
{
    /// <summary>The environment variable that carries the workflow's secret (hex) to the peer.</summary>
    public const string SecretVariable = "FAASTUBE_BENCH_SECRET";

    /// <summary>The remote client's window: the bytes of a Put or Get in flight at once.</summary>
    public const int WindowBytes = 16 << 20;

    private const string Workflow = "bench";
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(5);

    public override string Name => isolation == NetworkIsolation.Process ? "faastube" : "faastube-inprocess";

    /// <summary>How the rows say which node it was.</summary>
    private string Via => isolation == NetworkIsolation.Process ? "via the gateway" : "UCX in the node";

    public override async Task<RemoteServer> ServeAsync(IPAddress at, string device)
    {
        byte[] secret = RandomNumberGenerator.GetBytes(32);
        string socket = Path.Combine(Path.GetTempPath(), $"faastube-bench-{Environment.ProcessId}.sock");
        var node = await TubeNode.StartAsync(new TubeNodeOptions
        {
            SocketPath = socket,
            NetworkListen = $"{at}:0",
            NetworkIsolation = isolation,
            RemoteSecrets = new Dictionary<string, byte[]> { [Workflow] = secret },
            UcxSettings = new Dictionary<string, string> { ["TLS"] = "tcp", ["NET_DEVICES"] = device },
            Pool = new FaaSTube.Memory.GpuPoolOptions { SlabBytes = 512 << 20, FloorBytes = 0 },
        }).WaitAsync(Bound);
        return new RemoteServer($"ucx://{node.NetworkEndPoint}", () => node.DisposeAsync(),
            new Dictionary<string, string> { [SecretVariable] = Convert.ToHexString(secret) });
    }

    public override async Task<IReadOnlyList<RemoteRow>> MeasureAsync(string connectAddress, RemotePlan plan)
    {
        await using var client = await TubeClient.ConnectAsync(new TubeClientOptions
        {
            Address = connectAddress,
            Workflow = Workflow,
            Function = "remote-baseline",
            RemoteSecret = Convert.FromHexString(Environment.GetEnvironmentVariable(SecretVariable) ?? throw new InvalidOperationException($"{SecretVariable} is not set")),
            WindowBytes = WindowBytes,
            UcxSettings = new Dictionary<string, string> { ["TLS"] = "tcp" }, // NET_DEVICES from UCX_NET_DEVICES
            CallTimeout = TimeSpan.FromMinutes(2),
        }).WaitAsync(Bound);
        var rows = new List<RemoteRow>();
        var keep = new PutOptions { KeepUntilDeleted = true };
        foreach (long size in plan.Sizes)
        {
            var data = new byte[size];
            Random.Shared.NextBytes(data);
            int count = plan.CountOf(size), warmup = plan.WarmupOf(size);
            var put = TimeSpan.Zero;
            for (int i = -warmup; i < count; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                var id = await client.PutAsync(data, keep).WaitAsync(Bound);
                if (i >= 0)
                {
                    put += Stopwatch.GetElapsedTime(t0);
                }

                await client.DeleteAsync(id).WaitAsync(Bound);
            }

            rows.Add(new RemoteRow(Name, "put", $"FaaSTube remote Put ({Via}), peer to root", size, MiBPerSecond(size * count, put)));

            var datum = await client.PutAsync(data, keep).WaitAsync(Bound);
            var back = new byte[size];
            for (int i = 0; i < warmup; i++)
            {
                await client.GetAsync(datum, back).WaitAsync(Bound);
            }

            var clock = Stopwatch.StartNew();
            for (int i = 0; i < count; i++)
            {
                await client.GetAsync(datum, back).WaitAsync(Bound);
            }

            clock.Stop();
            if (!back.AsSpan().SequenceEqual(data))
            {
                throw new InvalidOperationException($"the {size}-byte Get brought back other bytes");
            }

            rows.Add(new RemoteRow(Name, "get", $"FaaSTube remote Get ({Via}), root to peer", size, MiBPerSecond(size * count, clock.Elapsed)));
            await client.DeleteAsync(datum).WaitAsync(Bound);
        }

        var probe = await client.PutAsync(new byte[8], keep).WaitAsync(Bound);
        var times = new double[plan.LatencyIterations];
        var stamps = new (long Sent, long Answered)[plan.LatencyIterations];
        for (int i = -plan.LatencyWarmup; i < plan.LatencyIterations; i++)
        {
            long sent = DateTime.UtcNow.Ticks; // the machine's one wall clock: the node's spans (the scenario's --breakdown) use it too
            long t0 = Stopwatch.GetTimestamp();
            await client.WhereAsync(probe).WaitAsync(Bound);
            if (i >= 0)
            {
                times[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds / 2;
                stamps[i] = (sent, DateTime.UtcNow.Ticks);
            }
        }

        foreach (var (sent, answered) in stamps)
        {
            Console.WriteLine(RemoteStamp.Serialize(Name, sent, answered));
        }

        rows.Add(new RemoteRow(Name, "latency", $"FaaSTube remote Where ({Via}), half the round trip", 8, BindingsSubject.Percentile(times, 0.5), times.Average()));
        await client.DeleteAsync(probe).WaitAsync(Bound);
        return rows;
    }

    private static double MiBPerSecond(long bytes, TimeSpan elapsed) => bytes / (1024.0 * 1024.0) / elapsed.TotalSeconds;
}
