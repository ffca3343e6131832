using FaaSTube.Channels;
using FaaSTube.Channels.Peers;
using FaaSTube.Channels.Remote.Gateway;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// The node's side of node-to-node fetches without a network (src/FaaSTube/Channels/Peers): a
/// transport of the test's own puts the "fetched" bytes with a local client, as the gateway does,
/// so the fetcher's limits, sharing and adoption are checked alone; and the lines the network
/// gateway answers on are read as a hostile gateway could write them.
/// </summary>
[TestClass]
public sealed class PeerFetcherTests
{
    private static readonly byte[] Secret = new byte[32];

    public TestContext TestContext { get; set; } = null!;

    /// <summary>A transport that waits for the test's go, then Puts the bytes the test chose as workflow wf, and counts its calls.</summary>
    private sealed class FakeTransport(TubeClient putter, byte[] data) : IPeerTransport
    {
        private int _running;
        public int Calls;
        public int MostAtOnce;
        public TaskCompletionSource Go { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public Func<PeerFetch, TubeId, TubeId>? Answer { get; init; }

        public async Task<PeerFetched> FetchAsync(PeerFetch fetch, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref Calls);
            int now = Interlocked.Increment(ref _running);
            int most;
            while ((most = Volatile.Read(ref MostAtOnce)) < now && Interlocked.CompareExchange(ref MostAtOnce, now, most) != most)
            {
            }

            try
            {
                await Go.Task.WaitAsync(cancellationToken);
                var put = await putter.PutAsync(data, cancellationToken: cancellationToken);
                return new PeerFetched(fetch.Request, Answer?.Invoke(fetch, put) ?? put, data.Length, 0);
            }
            finally
            {
                Interlocked.Decrement(ref _running);
            }
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    private static TubeNodeOptions Settings(int maxFetches = 8, TimeSpan? timeout = null) => new()
    {
        NodeNumber = 2,
        PeerNodes = new Dictionary<int, string> { [1] = "ucx://192.0.2.1:7000", [3] = "ucx://192.0.2.3:7000" },
        RemoteSecrets = new Dictionary<string, byte[]> { ["wf"] = Secret },
        MaxPeerFetches = maxFetches,
        PeerFetchTimeout = timeout ?? TimeSpan.FromSeconds(60),
    };

    private static TubeId HomeOf(int home) => new(TubeId.NewId().High, (TubeId.NewId().Low & 0x0000FFFFFFFFFFFF) | ((ulong)home << 48));

    [TestMethod]
    public async Task Gets_of_one_id_share_a_fetch_and_the_copy_is_kept_under_the_asked_id()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var putter = await h.ConnectAsync(inProcess: true, function: PeerFetch.Function); // as the gateway's client of the node
        byte[] data = random.Bytes(random.Next(1, 1 << 20));
        var transport = new FakeTransport(putter, data);
        await using var fetcher = new PeerFetcher(h.Node, transport, Settings());
        var id = HomeOf(1);

        var gets = Enumerable.Range(0, 5).Select(_ => fetcher.FetchAsync("wf", id, TimeSpan.Zero, CancellationToken.None)).ToArray();
        transport.Go.SetResult();
        var entries = await Task.WhenAll(gets);
        Assert.AreEqual(1, transport.Calls, "one fetch for five Gets of the same id");
        Assert.IsTrue(entries.All(e => e is not null && e.Id == id && e.Committed), "each Get finds the copy under the asked id");
        Assert.AreEqual(1, h.Node.Directory.All.Count(), "the fetched Put's own id is gone: only the adopted one is left");

        var consumer = await h.ConnectAsync(inProcess: true);
        var back = new byte[data.Length];
        await consumer.GetAsync(id, back);
        CollectionAssert.AreEqual(data, back, "the adopted entry holds the fetched bytes");
        Assert.AreEqual(data.Length, h.Node.PathBytes(TubePath.NodeFetch, transmit: false), "the admin status counts the fetched bytes");
    }

    [TestMethod]
    public async Task At_most_MaxPeerFetches_run_at_once_and_a_stuck_one_ends_at_its_timeout()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var putter = await h.ConnectAsync(inProcess: true, function: PeerFetch.Function); // as the gateway's client of the node
        var transport = new FakeTransport(putter, random.Bytes(100));
        await using var fetcher = new PeerFetcher(h.Node, transport, Settings(maxFetches: 2, timeout: TimeSpan.FromSeconds(1)));

        var gets = Enumerable.Range(0, 6).Select(_ => fetcher.FetchAsync("wf", HomeOf(1), TimeSpan.Zero, CancellationToken.None)).ToArray();
        var failures = await Task.WhenAll(gets.Select(async g => await Assert.ThrowsExactlyAsync<TubeException>(() => g)));
        Assert.IsTrue(failures.All(f => f.Error == TubeError.NotFound), "a fetch that does not end in time is the asker's NotFound");
        StringAssert.Contains(failures[0].Message, "no answer within", failures[0].Message);
        Assert.IsLessThanOrEqualTo(2, transport.MostAtOnce, "never more fetches at once than MaxPeerFetches");
        Assert.AreEqual(6, fetcher.Failed);
        Assert.AreEqual(0, h.Node.Directory.All.Count(), "nothing of the stuck fetches is kept");
    }

    [TestMethod]
    public async Task Whom_a_fetch_asks_follows_the_ids_home()
    {
        await using var h = await NodeHarness.StartAsync();
        var putter = await h.ConnectAsync(inProcess: true, function: PeerFetch.Function); // as the gateway's client of the node
        var transport = new FakeTransport(putter, new byte[8]);
        transport.Go.SetResult();
        await using var fetcher = new PeerFetcher(h.Node, transport, Settings());

        Assert.IsNull(await fetcher.FetchAsync("wf", HomeOf(2), TimeSpan.Zero, CancellationToken.None), "this node's own id is asked of nobody");
        Assert.IsNull(await fetcher.FetchAsync("wf", HomeOf(9), TimeSpan.Zero, CancellationToken.None), "an id of a node that is no peer is asked of nobody");
        Assert.AreEqual(0, transport.Calls);
        Assert.IsTrue(fetcher.Serves("wf", "f"));
        Assert.IsFalse(fetcher.Serves("nosecret", "f"), "a workflow without a remote secret never leaves the node");
        Assert.IsFalse(fetcher.Serves("wf", PeerFetch.Function), "a peer's fetch never makes this node fetch in turn");
        Assert.IsNotNull(await fetcher.FetchAsync("wf", TubeId.NewId(), TimeSpan.Zero, CancellationToken.None), "an id of unknown home is asked of the peers");
        Assert.AreEqual(1, transport.Calls, "the first peer had it");
    }

    [TestMethod]
    public async Task A_gateway_that_names_someone_elses_data_as_the_fetch_adopts_nothing()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var other = await h.ConnectAsync(inProcess: true, workflow: "other");
        var theirs = await other.PutAsync(random.Bytes(64));
        var putter = await h.ConnectAsync(inProcess: true, function: PeerFetch.Function); // as the gateway's client of the node
        var transport = new FakeTransport(putter, random.Bytes(64)) { Answer = (_, _) => theirs }; // "fetched": another workflow's id
        transport.Go.SetResult();
        await using var fetcher = new PeerFetcher(h.Node, transport, Settings());
        var id = HomeOf(1);

        var refused = await Assert.ThrowsExactlyAsync<TubeException>(() => fetcher.FetchAsync("wf", id, TimeSpan.Zero, CancellationToken.None));
        Assert.AreEqual(TubeError.NotFound, refused.Error);
        Assert.IsNull(h.Node.Directory.TryFind("wf", id), "nothing was adopted");
        Assert.IsNotNull(h.Node.Directory.TryFind("other", theirs), "the other workflow's data is untouched");
    }

    [TestMethod]
    [DataRow("fetched ")]
    [DataRow("fetched {")]
    [DataRow("fetched {\"Request\":1}")]
    [DataRow("fetched {\"Request\":1,\"Local\":\"zz\",\"Length\":5}")]
    [DataRow("fetched {\"Request\":1,\"Local\":\"00000000000000000000000000000001\",\"Length\":-5}")]
    [DataRow("fetched {\"Request\":1,\"Local\":\"00000000000000000000000000000001\",\"Length\":0}")]
    [DataRow("fetched [1,2,3]")]
    public void A_malformed_answer_from_the_gateway_is_refused(string line)
    {
        var thrown = Assert.Throws<Exception>(() => GatewayFetchLines.ReadAnswer(line));
        Assert.IsTrue(thrown is InvalidDataException or System.Text.Json.JsonException or FormatException, $"{thrown.GetType().Name}: {thrown.Message}");
    }

    [TestMethod]
    public void Answers_from_the_gateway_read_back_and_unknown_codes_are_internal()
    {
        var id = TubeId.NewId();
        var (request, fetched, refused) = GatewayFetchLines.ReadAnswer(GatewayFetchLines.Answer(new PeerFetched(7, id, 123, 0)));
        Assert.AreEqual(7, request);
        Assert.AreEqual(new PeerFetched(7, id, 123, 0), fetched);
        Assert.IsNull(refused);

        (_, fetched, refused) = GatewayFetchLines.ReadAnswer("fetched {\"Request\":8,\"Error\":999,\"Message\":\"who knows\"}");
        Assert.IsNull(fetched);
        Assert.AreEqual(TubeError.Internal, ((TubeException)refused!).Error, "an error code the node does not know is not passed through as if it did");

        (_, _, refused) = GatewayFetchLines.ReadAnswer(GatewayFetchLines.Unreachable(9, "gone"));
        Assert.IsInstanceOfType<TubeNodeUnavailableException>(refused);
        Assert.Throws<InvalidDataException>(() => GatewayFetchLines.ReadAnswer("fetched " + new string(' ', GatewayFetchLines.MaxLine)));

        var ask = new PeerFetch(3, "ucx://h:1", "wf", null, "ns", "model", 250);
        Assert.AreEqual(ask, GatewayFetchLines.ReadAsk(GatewayFetchLines.Ask(ask)));
    }
}
