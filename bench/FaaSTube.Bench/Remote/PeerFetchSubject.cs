using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using FaaSTube.Channels;

namespace FaaSTube.Bench.Remote;

/// <summary>
/// Node to node (src/FaaSTube/Channels/Peers): node 1 in the root namespace, node 2 in the peer
/// namespace with node 1 as its peer, both with their network side in their gateways. From the peer:
/// a remote client of node 1 Puts a datum of each size there (not timed, like the Delete after each),
/// then a client of node 2 on the same machine Gets it on node 2's GPU, which fetches it from node 1:
/// "get" (root to peer) is that Get, the fetch included, one at a time. "latency": the same for 8
/// bytes, the whole Get (the link to the peer kept from the fetch before: no connect), not halved.
/// </summary>
internal sealed class PeerFetchSubject : RemoteSubject
{
    private const string Workflow = "bench";
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(5);

    public override string Name => "faastube-peer-fetch";

    public override async Task<RemoteServer> ServeAsync(IPAddress at, string device)
    {
        byte[] secret = RandomNumberGenerator.GetBytes(32);
        var node = await TubeNode.StartAsync(new TubeNodeOptions
        {
            SocketPath = Path.Combine(Path.GetTempPath(), $"faastube-bench-n1-{Environment.ProcessId}.sock"),
            NodeNumber = 1,
            NetworkListen = $"{at}:0",
            RemoteSecrets = new Dictionary<string, byte[]> { [Workflow] = secret },
            UcxSettings = new Dictionary<string, string> { ["TLS"] = "tcp", ["NET_DEVICES"] = device },
            Pool = new FaaSTube.Memory.GpuPoolOptions { SlabBytes = 512 << 20, FloorBytes = 0 },
        }).WaitAsync(Bound);
        return new RemoteServer($"ucx://{node.NetworkEndPoint}", () => node.DisposeAsync(),
            new Dictionary<string, string> { [FaaSTubeSubject.SecretVariable] = Convert.ToHexString(secret) });
    }

    public override async Task<IReadOnlyList<RemoteRow>> MeasureAsync(string connectAddress, RemotePlan plan)
    {
        byte[] secret = Convert.FromHexString(Environment.GetEnvironmentVariable(FaaSTubeSubject.SecretVariable) ?? throw new InvalidOperationException($"{FaaSTubeSubject.SecretVariable} is not set"));
        var ucx = new Dictionary<string, string> { ["TLS"] = "tcp", ["NET_DEVICES"] = Environment.GetEnvironmentVariable("UCX_NET_DEVICES") ?? "all" };
        await using var two = await TubeNode.StartAsync(new TubeNodeOptions
        {
            SocketPath = Path.Combine(Path.GetTempPath(), $"faastube-bench-n2-{Environment.ProcessId}.sock"),
            NodeNumber = 2,
            PeerNodes = new Dictionary<int, string> { [1] = connectAddress },
            NetworkListen = "0.0.0.0:0",
            RemoteSecrets = new Dictionary<string, byte[]> { [Workflow] = secret },
            UcxSettings = ucx,
            Pool = new FaaSTube.Memory.GpuPoolOptions { SlabBytes = 512 << 20, FloorBytes = 0 },
        }).WaitAsync(Bound);
        await using var producer = await TubeClient.ConnectAsync(new TubeClientOptions
        {
            Address = connectAddress,
            Workflow = Workflow,
            Function = "peer-fetch-producer",
            RemoteSecret = secret,
            WindowBytes = FaaSTubeSubject.WindowBytes,
            UcxSettings = ucx,
            CallTimeout = TimeSpan.FromMinutes(2),
        }).WaitAsync(Bound);
        await using var consumer = await TubeClient.ConnectInProcessAsync(two, new TubeClientOptions { Workflow = Workflow, Function = "peer-fetch-consumer" });

        var rows = new List<RemoteRow>();
        foreach (long size in plan.Sizes)
        {
            var data = new byte[size];
            Random.Shared.NextBytes(data);
            var elapsed = await FetchEachAsync(producer, consumer, data, plan.CountOf(size), plan.WarmupOf(size));
            rows.Add(new RemoteRow(Name, "get", "FaaSTube node-to-node fetch (Get on node 2 of node 1's id), root to peer", size, size * (double)elapsed.Length / (1024.0 * 1024.0) / elapsed.Sum()));
        }

        var small = await FetchEachAsync(producer, consumer, new byte[8], plan.LatencyIterations / 10 + 1, plan.LatencyWarmup / 10 + 1);
        var micros = small.Select(s => s * 1e6).ToArray();
        rows.Add(new RemoteRow(Name, "latency", "FaaSTube node-to-node fetch of 8 bytes, the whole Get (on a kept link), not halved", 8, BindingsSubject.Percentile(micros, 0.5), micros.Average()));
        return rows;
    }

    /// <summary>Seconds of each timed fetch: a fresh id put on node 1 (not timed), then Get on node 2's GPU 0 (timed) and let go.</summary>
    private static async Task<double[]> FetchEachAsync(TubeClient producer, TubeClient consumer, byte[] data, int count, int warmup)
    {
        var seconds = new double[count];
        for (int i = -warmup; i < count; i++)
        {
            var id = await producer.PutAsync(data).WaitAsync(Bound);
            long t0 = Stopwatch.GetTimestamp();
            await using (var got = await consumer.GetAsync(id).WaitAsync(Bound))
            {
                if (i >= 0)
                {
                    seconds[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                }

                if (got.Path != TubePath.NodeFetch || got.Memory.Length != data.Length)
                {
                    throw new InvalidOperationException($"a Get on node 2 took path {got.Path} for {got.Memory.Length} bytes; a fetch of {data.Length} was expected");
                }
            }

            await consumer.DeleteAsync(id).WaitAsync(Bound);
        }

        return seconds;
    }
}
