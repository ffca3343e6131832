using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using FaaSTube.Native;
using FaaSTube.Native.Ucx;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Native;

/// <summary>
/// The UCX bindings between two "machines": a listener in the root namespace (this process), a
/// peer in a network namespace of its own (the TestChild helper's ucx-peer mode, started with
/// <c>ip netns exec</c>) joined by a veth pair (<see cref="NetworkNamespace"/>), over UCX's TCP
/// transport only. Skipped (inconclusive) where libucp is missing or namespaces cannot be made.
/// What bounds a failure when the peer dies or the link is cut, as measured here: docs/testing.md
/// ("UCX over TCP on a private network").
/// </summary>
[TestClass]
public sealed class UcxNamespaceTests
{
    /// <summary>See <see cref="UcxPeerLoss"/>: these run only when opted in.</summary>
    [TestInitialize]
    public void OptIn() => UcxPeerLoss.RequireOptIn();

    /// <summary>
    /// UCP settings (without the UCX_ prefix) for both ends' contexts: TCP only. Each end also keeps
    /// UCX to the private link (NET_DEVICES, added where the link's name is known).
    /// </summary>
    internal static readonly IReadOnlyDictionary<string, string> TcpOnly = new Dictionary<string, string> { ["TLS"] = "tcp" };

    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    /// <summary>How long a pending operation may take to fail once its peer is gone: what "nothing hangs" means here.</summary>
    private static readonly TimeSpan FailureBound = TimeSpan.FromSeconds(60);

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task Random_buffers_of_1_byte_to_256_MiB_cross_the_namespaces_whole()
    {
        await using var pair = await RemotePair.OpenAsync(TestContext);
        var random = Seeds.Create(TestContext);
        int[] sizes = [1, 7, 4096, 65_537, 1 << 20, (3 << 20) + 5, 16 << 20, 64 << 20, 256 << 20];
        ulong tag = 0x10;
        foreach (int size in sizes)
        {
            byte[] sent = random.Bytes(size);
            string expected = Checksum(sent);
            long before = pair.Bed.HostTransmittedBytes;
            await pair.Peer.SendLineAsync($"echo {size} {tag}");
            await pair.ServerSide.SendAsync(sent, tag).WaitAsync(Bound);
            Assert.AreEqual($"got {size} {expected}", await pair.ReplyAsync(), $"{size} bytes, here to the namespace");

            var back = new byte[size];
            var message = await pair.ServerSide.ReceiveAsync(back, tag + 1).WaitAsync(Bound);
            Assert.AreEqual("sent", await pair.ReplyAsync());
            Assert.AreEqual(size, message.Length);
            Assert.AreEqual(expected, Checksum(back), $"{size} bytes, back");
            long crossed = pair.Bed.HostTransmittedBytes - before;
            Assert.IsGreaterThanOrEqualTo(size, crossed, "the bytes went over the veth link");
            TestContext.WriteLine($"{size} bytes: {expected} ({crossed} bytes out on {pair.Bed.HostLink})");
            tag += 2;
        }
    }

    [TestMethod]
    public async Task A_peer_killed_mid_transfer_fails_the_pending_sends_and_receives_in_bounded_time()
    {
        await using var pair = await RemotePair.OpenAsync(TestContext);
        const int Size = 256 << 20;
        const int Count = 4;
        for (int i = 0; i < Count; i++)
        {
            await pair.Peer.SendLineAsync($"recv {Size} {0x100 + i}");
        }

        Assert.AreEqual("posted", await pair.ReplyAsync());
        var data = new byte[Size];
        long before = pair.Bed.HostTransmittedBytes;
        var sends = Enumerable.Range(0, Count).Select(i => pair.ServerSide.SendAsync(data, (ulong)(0x100 + i))).ToArray();
        var receive = pair.ServerSide.ReceiveAsync(new byte[64], 0x200);
        long moved = await WaitForBytesAsync(() => pair.Bed.HostTransmittedBytes - before, 64 << 20);
        Assert.IsFalse(sends[^1].IsCompleted, $"the transfer is still under way ({moved} bytes crossed)");

        var clock = Stopwatch.StartNew();
        await pair.Peer.KillAsync();
        var failure = await pair.ServerSide.Failed.WaitAsync(FailureBound);
        TestContext.WriteLine($"killed after {moved} bytes; endpoint failed after {clock.ElapsedMilliseconds} ms: {failure.Message}");
        foreach (var send in sends.Where(s => !s.IsCompletedSuccessfully))
        {
            await Assert.ThrowsAsync<Exception>(() => send.WaitAsync(FailureBound));
        }

        await Assert.ThrowsAsync<Exception>(() => receive.WaitAsync(FailureBound));
        TestContext.WriteLine($"every pending operation failed after {clock.ElapsedMilliseconds} ms");
        Assert.IsLessThan(FailureBound, clock.Elapsed);
        Assert.AreEqual(0, pair.Server.PendingCount, "nothing left pending in UCX");
    }

    [TestMethod]
    public async Task A_link_cut_mid_transfer_fails_both_sides_in_bounded_time()
    {
        await using var pair = await RemotePair.OpenAsync(TestContext);

        // The peer sends: a connection with data unacknowledged is bounded only by TCP's retransmissions
        // (UCX 1.13 sets no TCP_USER_TIMEOUT); with the default 15 the peer waits about 15 minutes, so its
        // namespace (its own TCP stack) gives up after 5. This side receives and fails by UCX's own timeout.
        pair.Bed.SetSysctl("net.ipv4.tcp_retries2", "5");
        const int Size = 256 << 20;
        const int Count = 4;
        var buffers = Enumerable.Range(0, Count).Select(_ => new byte[Size]).ToArray();
        var receives = buffers.Select((b, i) => pair.ServerSide.ReceiveAsync(b, (ulong)(0x300 + i))).ToArray();
        long before = pair.Bed.HostReceivedBytes;
        for (int i = 0; i < Count; i++)
        {
            await pair.Peer.SendLineAsync($"send {Size} {i} {0x300 + i}");
        }

        Assert.AreEqual("sending", await pair.ReplyAsync());
        long moved = await WaitForBytesAsync(() => pair.Bed.HostReceivedBytes - before, 64 << 20);
        Assert.IsFalse(receives[^1].IsCompleted, $"the transfer is still under way ({moved} bytes crossed)");

        var clock = Stopwatch.StartNew();
        pair.Bed.SetLink(up: false);
        var failure = await pair.ServerSide.Failed.WaitAsync(FailureBound);
        TestContext.WriteLine($"link cut after {moved} bytes; this side's endpoint failed after {clock.ElapsedMilliseconds} ms: {failure.Message}");
        foreach (var receive in receives.Where(r => !r.IsCompletedSuccessfully))
        {
            await Assert.ThrowsAsync<Exception>(() => receive.WaitAsync(FailureBound));
        }

        // The peer: its send in progress fails too (it says so), and nothing else is left hanging.
        string line;
        while ((line = await pair.ReplyAsync()).StartsWith("sen", StringComparison.Ordinal))
        {
            TestContext.WriteLine($"peer: {line}");
        }

        TestContext.WriteLine($"peer: {line} (after {clock.ElapsedMilliseconds} ms)");
        StringAssert.StartsWith(line, "failed ");
        Assert.IsLessThan(FailureBound, clock.Elapsed);
        Assert.AreEqual(0, pair.Server.PendingCount, "nothing left pending in UCX");
    }

    /// <summary>Waits (bounded) until <paramref name="crossed"/> reaches <paramref name="bytes"/>; returns it.</summary>
    private static async Task<long> WaitForBytesAsync(Func<long> crossed, long bytes)
    {
        var deadline = Stopwatch.StartNew();
        long now;
        while ((now = crossed()) < bytes)
        {
            Assert.IsLessThan(Bound, deadline.Elapsed, $"only {now} bytes crossed the link");
            await Task.Delay(1); // polls the kernel's link counters: nothing can signal them
        }

        return now;
    }

    private static string Checksum(ReadOnlySpan<byte> data) => Convert.ToHexString(SHA256.HashData(data));

    /// <summary>The test bed, a listener on its host address, the peer in the namespace connected to it, and the accepted endpoint.</summary>
    private sealed class RemotePair : IAsyncDisposable
    {
        private RemotePair(TestContext test, NetworkNamespace bed, UcxContext context, UcxWorker server)
        {
            Test = test;
            Bed = bed;
            Context = context;
            Server = server;
        }

        public TestContext Test { get; }
        public NetworkNamespace Bed { get; }
        public UcxContext Context { get; }
        public UcxWorker Server { get; }
        public ChildProcess Peer { get; private set; } = null!;
        public UcxEndpoint ServerSide { get; private set; } = null!;

        public static async Task<RemotePair> OpenAsync(TestContext test)
        {
            if (!UcxLibrary.TryLoad(out string? reason))
            {
                Assert.Inconclusive($"UCX (libucp) is not installed here, so the transport cannot be exercised: {reason}");
            }

            var bed = NetworkNamespace.TryCreate(out reason);
            if (bed is null)
            {
                Assert.Inconclusive($"network namespaces cannot be made here: {reason}");
            }

            var settings = new Dictionary<string, string>(TcpOnly) { ["NET_DEVICES"] = bed.HostLink };
            var context = UcxContext.Create(settings);
            var pair = new RemotePair(test, bed, context, UcxWorker.Create(context, "ucx-netns-server"));
            try
            {
                var listener = await UcxListener.ListenAsync(pair.Server, new IPEndPoint(bed.HostAddress, 0)).WaitAsync(Bound);
                var environment = new Dictionary<string, string> { ["UCX_TLS"] = "tcp", ["UCX_NET_DEVICES"] = bed.PeerLink };
                pair.Peer = ChildProcess.StartIn(bed, environment, "ucx-peer", bed.HostAddress.ToString(), listener.LocalEndPoint.Port.ToString(CultureInfo.InvariantCulture));
                Assert.AreEqual("connected", await pair.ReplyAsync());
                pair.ServerSide = await (await listener.AcceptAsync().AsTask().WaitAsync(Bound)).AcceptAsync(pair.Server).WaitAsync(Bound);
                test.WriteLine($"UCX {UcxLibrary.Version}: {bed.Name}, listening on {listener.LocalEndPoint} ({bed.HostLink}), peer {pair.ServerSide.Peer} (pid {pair.Peer.Id})");
                Assert.AreEqual(bed.PeerAddress, pair.ServerSide.Peer?.Address, "the peer came from its namespace");
                return pair;
            }
            catch
            {
                await pair.DisposeAsync();
                throw;
            }
        }

        /// <summary>The peer's next reply; UCX's own log lines ("[time] [host:pid:thread] file:line UCX ...") are logged and skipped.</summary>
        public async Task<string> ReplyAsync()
        {
            while (true)
            {
                string line = await Peer.ReadLineAsync();
                if (!line.StartsWith('['))
                {
                    return line;
                }

                Test.WriteLine($"peer's UCX log: {line}");
            }
        }

        public ValueTask DisposeAsync()
        {
            Peer?.Dispose();
            Server.Dispose();
            Context.Dispose();
            Bed.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
