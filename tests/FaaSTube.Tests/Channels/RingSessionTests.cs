using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.Sockets;
using FaaSTube.Channels;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Transport;
using FaaSTube.Tests.Support;
using static FaaSTube.Channels.Transport.ControlRingLayout;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// Sessions whose requests come on the control ring, against a client that writes what it likes into
/// the shared memory or stops reading: its session ends, nobody else notices. The ring's own rules are
/// ControlRingTests; the contract of every call over the ring is RingChannelTests.
/// </summary>
[TestClass]
public sealed class RingSessionTests
{
    private const int Capacity = 4096;

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task A_corrupted_ring_ends_its_own_session_and_no_other()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var healthy = await h.ConnectAsync(inProcess: false);
        var id = await healthy.PutAsync(random.Bytes(10_000));

        await using var hostile = await RawRingClient.ConnectAsync(h);
        var ended = h.SessionEnded(hostile.SessionId);
        Assert.AreEqual(TubeError.NotFound, await hostile.WhereAsync(TubeId.NewId()), "a well-formed request on the ring is answered on it");

        var header = hostile.RequestRingHeader();
        random.NextBytes(header);
        BinaryPrimitives.WriteUInt64LittleEndian(header[ProducerSequenceOffset..], BinaryPrimitives.ReadUInt64LittleEndian(header) | (1UL << 63)); // never a plausible count
        hostile.WakeNode();

        var (error, message) = await hostile.ConnectionErrorAsync();
        TestContext.WriteLine($"{error}: {message}");
        Assert.AreEqual(TubeError.BadRequest, error);
        StringAssert.Contains(message, "control ring");
        await ended.WaitAsync(ChildProcess.Timeout);

        Assert.AreEqual(0, await healthy.WhereAsync(id), "the healthy client's ring and session are untouched");
        Assert.AreEqual(1, h.Node.SessionCount);
    }

    [TestMethod]
    public async Task A_client_that_never_takes_its_answers_off_the_ring_is_ended_and_stalls_nobody()
    {
        await using var h = await NodeHarness.StartAsync(configure: o => o.StalledClientTimeout = TimeSpan.FromMilliseconds(300));
        var healthy = await h.ConnectAsync(inProcess: false);
        var id = await healthy.PutAsync(new byte[4096]);

        await using var stalled = await RawRingClient.ConnectAsync(h);
        var ended = h.SessionEnded(stalled.SessionId);
        int sent = stalled.FloodWithoutReading(FrameType.Where, new PayloadWriter().Id(id).Memory.Span);
        TestContext.WriteLine($"{sent} requests on the ring, no answer read");
        Assert.IsGreaterThan(Capacity / RecordBytes(8), sent, "more requests than the answer ring can hold");

        await ended.WaitAsync(ChildProcess.Timeout); // the node gave up on it after StalledClientTimeout
        Assert.AreEqual(0, await healthy.WhereAsync(id), "meanwhile and after, the node serves others");
        Assert.AreEqual(1, h.Node.SessionCount);
    }

    [TestMethod]
    public async Task A_client_that_trickles_its_answers_is_ended_after_the_stall_timeout_and_the_node_keeps_only_a_slot_per_answer()
    {
        await using var h = await NodeHarness.StartAsync(configure: o => o.StalledClientTimeout = TimeSpan.FromSeconds(1));
        var healthy = await h.ConnectAsync(inProcess: false);
        var id = await healthy.PutAsync(new byte[100]);
        await using var trickler = await RawRingClient.ConnectAsync(h);
        var ended = h.SessionEnded(trickler.SessionId);
        int sent = trickler.TrickleUntil(ended, FrameType.Where, new PayloadWriter().Id(TubeId.NewId()).Memory.ToArray(), readEvery: TimeSpan.FromMilliseconds(200), giveUpAfter: ChildProcess.Timeout);
        TestContext.WriteLine($"{sent} requests sent while reading one answer every 200 ms");
        Assert.IsTrue(ended.IsCompleted, "reading an answer now and then does not keep a stalled ring alive");
        Assert.IsLessThan(10_000, sent, "the requests' slots pushed back: the node did not queue answers without bound");
        Assert.AreEqual(0, await healthy.WhereAsync(id));
    }

    [TestMethod]
    public async Task A_busy_client_that_keeps_the_nodes_ring_full_is_not_failed_while_every_call_is_answered()
    {
        await using var h = await NodeHarness.StartAsync();
        await using var client = await TubeClient.ConnectAsync(new TubeClientOptions
        {
            ControlRingBytes = 4 << 10, // small: 500 calls in flight keep it full
            SocketPath = h.Socket,
            CallTimeout = TimeSpan.FromSeconds(1), // the client's stall limit too: counted from the node's last progress
            Gpus = new FaaSTube.Devices.GpuSystemOptions { Backend = h.Node.Gpus.Backend, SimulatedTopology = h.Node.Gpus.Topology },
        });
        Assert.IsTrue(client.UsesControlRing);
        var until = System.Diagnostics.Stopwatch.StartNew();
        long calls = 0;
        var loops = Enumerable.Range(0, 500).Select(_ => Task.Run(async () =>
        {
            while (until.Elapsed < TimeSpan.FromSeconds(3))
            {
                await client.FlushAsync();
                Interlocked.Increment(ref calls);
            }
        }));
        await Task.WhenAll(loops); // no TubeNodeUnavailableException: the ring stayed full for 3 s, but never without progress for 1 s
        TestContext.WriteLine($"{calls} calls in 3 s from 500 loops over a 4 KiB ring");
        Assert.IsGreaterThan(500L, calls);
    }

    [TestMethod]
    public async Task Beyond_MaxRingSessions_a_client_is_served_over_the_socket()
    {
        await using var h = await NodeHarness.StartAsync(configure: o => o.MaxRingSessions = 1);
        var first = await h.ConnectAsync(inProcess: false);
        var second = await h.ConnectAsync(inProcess: false);
        Assert.IsTrue(first.UsesControlRing);
        Assert.IsFalse(second.UsesControlRing, "the node ran out of ring sessions: the socket carries this one");
        var id = await second.PutAsync(new byte[100]);
        Assert.AreEqual(0, await second.WhereAsync(id));
        Assert.AreEqual(0, await first.WhereAsync(id));
        var ended = h.SessionEnded(first.SessionId);
        await first.DisposeAsync();
        await ended;
        var third = await h.ConnectAsync(inProcess: false);
        Assert.IsTrue(third.UsesControlRing, "the ring session came back when its session ended");
    }

    [TestMethod]
    public async Task Hello_with_a_ring_needs_exactly_two_descriptors_and_a_ring_layout()
    {
        await using var h = await NodeHarness.StartAsync();
        using var window = SharedWindow.Create(64 << 10);
        using var ring = ControlRing.Create(Capacity);

        var (error, message) = await RawRingClient.HelloAsync(h, window.Length, ring.TotalBytes, [window.Descriptor]);
        Assert.AreEqual(TubeError.BadRequest, error, message);
        StringAssert.Contains(message, "two descriptors");

        (error, message) = await RawRingClient.HelloAsync(h, window.Length, ring.TotalBytes + 1, [window.Descriptor, ring.Descriptor]);
        Assert.AreEqual(TubeError.BadRequest, error, message);

        (error, message) = await RawRingClient.HelloAsync(h, window.Length, TotalBytes(16 << 20), [window.Descriptor, ring.Descriptor]);
        Assert.AreEqual(TubeError.BadRequest, error, message);
        StringAssert.Contains(message, "limit");

        (error, message) = await RawRingClient.HelloAsync(h, window.Length, ring.TotalBytes, [window.Descriptor, window.Descriptor]);
        Assert.AreEqual(TubeError.BadRequest, error, "the window passed again as the ring: not of the ring's size");
        var client = await h.ConnectAsync(inProcess: false);
        Assert.AreEqual(0, await client.WhereAsync(await client.PutAsync(new byte[100])), "and the node serves the next client over its ring");
    }

    /// <summary>A client made by hand: a socket, a window and a ring, a Hello with both descriptors; requests on the ring.</summary>
    private sealed class RawRingClient : IAsyncDisposable
    {
        private readonly Socket _socket;
        private readonly SharedWindow _window;
        private readonly ControlRing _ring;
        private readonly PipeReader _reader;

        private RawRingClient(Socket socket, SharedWindow window, ControlRing ring, long sessionId)
        {
            _socket = socket;
            _window = window;
            _ring = ring;
            _reader = PipeReader.Create(new NetworkStream(socket));
            SessionId = sessionId;
        }

        public long SessionId { get; }

        public static async Task<RawRingClient> ConnectAsync(NodeHarness h)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(h.Socket));
            var window = SharedWindow.Create(64 << 10);
            var ring = ControlRing.Create(Capacity);
            UnixRights.Send(socket, Frames.Encode(FrameType.Hello, 1, HelloPayload(window.Length, ring.TotalBytes)), [window.Descriptor, ring.Descriptor]);
            var client = new RawRingClient(socket, window, ring, 0);
            var ok = await client.ReadSocketAsync();
            Assert.AreEqual(FrameType.Ok, ok.Type);
            var r = new PayloadReader(ok.Payload);
            r.U16();
            return new RawRingClient(socket, window, ring, r.I64());
        }

        /// <summary>A Hello with the given sizes and descriptors on a connection of its own: the node's refusal.</summary>
        public static async Task<(TubeError, string)> HelloAsync(NodeHarness h, long windowBytes, long ringBytes, System.Runtime.InteropServices.SafeHandle[] descriptors)
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(h.Socket));
            UnixRights.Send(socket, Frames.Encode(FrameType.Hello, 1, HelloPayload(windowBytes, ringBytes)), descriptors);
            var reader = PipeReader.Create(new NetworkStream(socket));
            using var timeout = new CancellationTokenSource(ChildProcess.Timeout);
            var reply = await Frames.ReadAsync(reader, 1 << 16, timeout.Token);
            Assert.IsNotNull(reply);
            Assert.AreEqual(FrameType.Error, reply.Value.Type);
            var r = new PayloadReader(reply.Value.Payload);
            var error = ((TubeError)r.U16(), r.Str());
            Assert.IsNull(await Frames.ReadAsync(reader, 1 << 16, timeout.Token), "and then the node closed the connection");
            return error;
        }

        private static ReadOnlySpan<byte> HelloPayload(long windowBytes, long ringBytes) =>
            new PayloadWriter().U16(Frames.Version).Str("wf").Str("raw").I64(windowBytes).I64(ringBytes).Memory.Span;

        /// <summary>Where on the ring; the node's error code (or 0 for Ok).</summary>
        public async Task<TubeError?> WhereAsync(TubeId id)
        {
            _ring.Send(FrameType.Where, 7, new PayloadWriter().Id(id).Memory.Span, ChildProcess.Timeout);
            var answer = await Task.Run(() => _ring.Receive(1 << 16, ChildProcess.Timeout));
            Assert.AreEqual(7u, answer.RequestId);
            return answer.Type == FrameType.Ok ? null : (TubeError)new PayloadReader(answer.Payload).U16();
        }

        /// <summary>Sends as fast as the ring takes requests, reading one answer every <paramref name="readEvery"/>, until <paramref name="done"/> or the bound; how many went.</summary>
        public int TrickleUntil(Task done, FrameType type, byte[] payload, TimeSpan readEvery, TimeSpan giveUpAfter)
        {
            int sent = 0;
            var started = System.Diagnostics.Stopwatch.StartNew();
            var lastRead = System.Diagnostics.Stopwatch.StartNew();
            while (!done.IsCompleted && started.Elapsed < giveUpAfter)
            {
                try
                {
                    if (_ring.TrySend(type, (uint)(sent + 1), payload))
                    {
                        sent++;
                    }
                    else
                    {
                        Thread.Yield();
                    }

                    if (lastRead.Elapsed > readEvery)
                    {
                        _ring.TryReceive(1 << 16, out _);
                        lastRead.Restart();
                    }
                }
                catch (ObjectDisposedException)
                {
                    break;
                }
            }

            return sent;
        }

        /// <summary>Sends until the request ring is full and stays full (the node stopped reading, its answers unread); how many went.</summary>
        public int FloodWithoutReading(FrameType type, ReadOnlySpan<byte> payload)
        {
            int sent = 0;
            while (true)
            {
                try
                {
                    _ring.Send(type, (uint)(sent + 1), payload, TimeSpan.FromSeconds(2));
                    sent++;
                }
                catch (Exception e) when (e is TimeoutException or ObjectDisposedException)
                {
                    return sent;
                }
            }
        }

        /// <summary>The request ring's header, to write garbage into.</summary>
        public unsafe Span<byte> RequestRingHeader() => new((byte*)_ring.Window.Pointer + RingOffset(0, Capacity), HeaderBytes);

        /// <summary>Wakes the node's receiver as a producer would after writing (it then reads whatever is there).</summary>
        public unsafe void WakeNode() => ControlRingSleeper.WakeAll((int*)((byte*)_ring.Window.Pointer + RingOffset(0, Capacity) + ConsumerSleeperOffset));

        /// <summary>The node's connection-level error (request id 0) on the socket, then its close.</summary>
        public async Task<(TubeError, string)> ConnectionErrorAsync()
        {
            var frame = await ReadSocketAsync();
            Assert.AreEqual(FrameType.Error, frame.Type);
            Assert.AreEqual(0u, frame.RequestId);
            var r = new PayloadReader(frame.Payload);
            return ((TubeError)r.U16(), r.Str());
        }

        private async Task<(FrameType Type, uint RequestId, byte[] Payload)> ReadSocketAsync()
        {
            using var timeout = new CancellationTokenSource(ChildProcess.Timeout);
            var frame = await Frames.ReadAsync(_reader, 1 << 16, timeout.Token);
            Assert.IsNotNull(frame, "the node closed the connection without a word");
            return frame.Value;
        }

        public async ValueTask DisposeAsync()
        {
            await _reader.CompleteAsync();
            _socket.Dispose();
            _ring.Dispose();
            ((IDisposable)_window).Dispose();
        }
    }
}
