using System.Security.Cryptography;
using FaaSTube.Channels;
using FaaSTube.Kernels;
using FaaSTube.Native;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// Node to node across network namespaces (issue 14): node 1 runs here, in the root namespace, its
/// network side in its gateway; node 2 is a TestChild process in the peer namespace
/// (tests/FaaSTube.TestChild/PeerNode.cs) with node 1 as its peer, over UCX's TCP transport kept to
/// the veth link. A consumer of node 2 reads what a producer put on node 1: one network transfer
/// (counted on the link), then local Gets. Skipped (inconclusive) where libucp is missing or
/// namespaces cannot be made.
/// </summary>
[TestClass]
public sealed class PeerNamespaceTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);
    private static readonly byte[] Secret = TestSecrets.Workflow;

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task A_consumer_on_another_machine_reads_a_producers_output_through_its_own_node()
    {
        if (!UcxLibrary.TryLoad(out string? reason))
        {
            Assert.Inconclusive($"UCX (libucp) is not installed here: {reason}");
        }

        using var bed = NetworkNamespace.TryCreate(out reason);
        if (bed is null)
        {
            Assert.Inconclusive($"network namespaces cannot be made here: {reason}");
        }

        var random = Seeds.Create(TestContext);
        await using var one = await NodeHarness.StartAsync(configure: o =>
        {
            o.NodeNumber = 1;
            o.NetworkListen = $"{bed.HostAddress}:0";
            o.RemoteSecrets = new Dictionary<string, byte[]> { ["wf"] = Secret };
            o.UcxSettings = new Dictionary<string, string> { ["TLS"] = "tcp", ["NET_DEVICES"] = bed.HostLink };
            o.Pool.SlabBytes = 64 << 20;
        });
        var producer = await one.ConnectAsync(inProcess: true);
        using var two = ChildProcess.StartIn(bed, new Dictionary<string, string>
        {
            ["UCX_NET_DEVICES"] = bed.PeerLink,
            ["FAASTUBE_REMOTE_SECRET"] = Convert.ToHexString(Secret),
            ["FAASTUBE_BACKEND"] = "simulated",
        }, "peer-node", $"{bed.PeerAddress}:0", $"ucx://{one.Node.NetworkEndPoint}", "wf");
        Assert.AreEqual("ready", await two.ReadLineAsync().WaitAsync(Bound), "node 2 started in the peer namespace");

        foreach (long size in new long[] { 1, 65_537, (3 << 20) + 5, (40 << 20) + 3 })
        {
            byte[] data = random.Bytes(size);
            var id = await producer.PutAsync(data, new PutOptions { Consumers = 1 });
            long before = bed.HostTransmittedBytes;
            await two.SendLineAsync($"get {id} {size}");
            string answer = await two.ReadLineAsync().WaitAsync(Bound);
            Assert.AreEqual($"got {size} {DataChecksum.Compute(data)} {Convert.ToHexString(SHA256.HashData(data))} NodeFetch", answer, $"{size} bytes: node 2's consumer read node 1's bytes on its GPU and to host, fetched from node 1");
            Assert.IsGreaterThanOrEqualTo(size, bed.HostTransmittedBytes - before, "the bytes crossed the veth link");
            Assert.IsLessThan(size + (size / 10) + (1 << 20), bed.HostTransmittedBytes - before, "once: the second read was node 2's own copy");
            TestContext.WriteLine($"{size,10} bytes fetched across the namespaces ({bed.HostTransmittedBytes - before} bytes on {bed.HostLink})");
        }

        byte[] model = random.Bytes((5 << 20) + 3);
        await producer.PutNamedAsync("model.weights", model);
        await two.SendLineAsync($"named model.weights {model.Length}");
        Assert.AreEqual($"named {model.Length} {Convert.ToHexString(SHA256.HashData(model))}", await two.ReadLineAsync().WaitAsync(Bound), "a name put on node 1 is read on node 2");
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (one.Node.SessionCount != 1)
        {
            Assert.IsLessThan(Bound, watch.Elapsed, "node 2's fetch sessions on node 1 end (only the producer's is left)");
            await Task.Delay(20);
        }
    }
}
