using System.Text;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using FaaSTube.Channels;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Channels.Remote;
using FaaSTube.Channels.Transport;
using FaaSTube.Native;
using FaaSTube.Platform;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// The node's side of the network gateway (docs/protocol.md, Handshake: GatewayHello): frames written
/// by hand as an attacker on the node's socket would write them. The right key and a sealed window
/// open a remote client's session (host data only, counted as remote); a wrong key, a key of another
/// length, a node with no gateway, another user, or a window Hello would refuse are refused, and the
/// connection closes holding nothing.
/// </summary>
[TestClass]
public sealed class GatewayHelloTests
{
    private const int WindowBytes = 1 << 20;

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task The_gateways_key_opens_a_remote_session_that_moves_host_data_and_nothing_on_the_gpu()
    {
        await using var h = await StartAsync();
        var random = Seeds.Create(TestContext);
        using var window = new ClientWindow(WindowBytes);
        await using var gateway = await RawConnection.OpenAsync(h.Socket);
        gateway.SendFirst(GatewayHelloPayload(h.Node.GatewayKey!, "wf", "relayed", WindowBytes), window.Descriptor);
        var ok = Payload.Read<HelloOk>(await gateway.AnswerAsync());
        Assert.AreEqual(Frames.Version, ok.Version);
        Assert.IsFalse(ok.Ring, "no control ring for a relayed session");

        var session = h.Node.Sessions.Single(s => s.Id == ok.SessionId);
        Assert.IsTrue(session.IsRemote, "a relayed session is a remote client's");
        Assert.AreEqual(RemoteSession.RemoteUid, session.Uid, "it counts under the remote uid, not the gateway's user");
        Assert.AreEqual("wf", session.Workflow);

        // A Put from the window, then a Get to host memory into the window's other half: the same bytes.
        var data = random.Bytes(random.Next(1, WindowBytes / 2));
        data.CopyTo(window.Memory.Span);
        var id = Payload.Read<PutBeginOk>(await gateway.CallAsync(new PutBegin(data.Length, 0))).Id;
        await gateway.CallAsync(new PutPart(id, 0, 0, data.Length, "", 0));
        await gateway.CallAsync(new PutCommit(id, Consumers: 1, TtlTicks: 0, KeepUntilDeleted: false));

        var device = await Assert.ThrowsExactlyAsync<TubeException>(() => gateway.CallAsync(new Get(id, 0, 0)));
        Assert.AreEqual(TubeError.BadRequest, device.Error, "a Get to a GPU, as for a remote client (RemoteClientTests)");
        StringAssert.Contains(device.Message, "a remote client reaches host data only");
        var allocate = await Assert.ThrowsExactlyAsync<TubeException>(() => gateway.CallAsync(new Allocate(4096, 0)));
        Assert.AreEqual(TubeError.BadRequest, allocate.Error);
        StringAssert.Contains(allocate.Message, "a remote client reaches host data only");

        var got = Payload.Read<GetOk>(await gateway.CallAsync(new Get(id, -1, 0)));
        Assert.AreEqual(data.Length, got.Length);
        Assert.IsNull(got.Mapping, "a host Get maps nothing");
        await gateway.CallAsync(new GetToHost(id, 0, WindowBytes / 2, data.Length));
        CollectionAssert.AreEqual(SHA256.HashData(data), SHA256.HashData(window.Memory.Span.Slice(WindowBytes / 2, data.Length)), "the bytes came back through the node");
        gateway.Post(new Release(id));
        await gateway.CallAsync(default(Sync));
        Assert.AreEqual(0, h.Node.PoolOf(0).GetStatistics().InUseBytes, "its one consumer got it and let go");

        var ended = h.SessionEnded(ok.SessionId);
        await gateway.DisposeAsync(); // the gateway's connection goes: the session ends with it
        await ended.WaitAsync(ChildProcess.Timeout);
        Assert.AreEqual(0, h.Node.SessionCount);
    }

    [TestMethod]
    public async Task A_gateway_hello_brings_a_control_ring_checked_as_hellos_and_a_refused_one_takes_no_ring_session()
    {
        await using var h = await StartAsync(o => o.MaxRingSessions = 1);
        var random = Seeds.Create(TestContext);
        byte[] key = h.Node.GatewayKey!;
        using (var window = new ClientWindow(WindowBytes))
        using (var ring = ControlRing.Create(64 << 10))
        {
            var flipped = (byte[])key.Clone();
            flipped[0] ^= 1;
            var wrong = await RefusedAsync(h, GatewayHelloPayload(flipped, "wf", "f", WindowBytes, ring.TotalBytes), window.Descriptor, ring.Descriptor);
            Assert.AreEqual(TubeError.AccessDenied, wrong.Error, "the key is checked before the ring is taken");
            var alone = await RefusedAsync(h, GatewayHelloPayload(key, "wf", "f", WindowBytes, ring.TotalBytes), window.Descriptor);
            Assert.AreEqual(TubeError.BadRequest, alone.Error);
            StringAssert.Contains(alone.Message, "two descriptors");
            var odd = await RefusedAsync(h, GatewayHelloPayload(key, "wf", "f", WindowBytes, ring.TotalBytes + 4096), window.Descriptor, ring.Descriptor);
            Assert.AreEqual(TubeError.BadRequest, odd.Error, "a ring of another size than the GatewayHello says");
        }

        // The node's one ring session is still free after the refusals: the relay's connection
        // (GatewayRelay's: a ring, answers completed in place) takes it, and its requests go there.
        using var relayWindow = new ClientWindow(WindowBytes);
        await using var relay = await RelayAsync(h, relayWindow);
        Assert.IsTrue(relay.UsesRing, "the node took the relay's ring");
        var data = random.Bytes(random.Next(1, WindowBytes / 2));
        data.CopyTo(relayWindow.Memory.Span);
        var id = (await relay.CallAsync(new PutBegin(data.Length, 0), CancellationToken.None)).Id;
        await relay.CallAsync(new PutPart(id, 0, 0, data.Length, "", 0), CancellationToken.None);
        await relay.CallAsync(new PutCommit(id, Consumers: 1, TtlTicks: 0, KeepUntilDeleted: false), CancellationToken.None);
        Assert.AreEqual(0, (await relay.CallAsync(new Where(id), CancellationToken.None)).Device);
        Assert.AreEqual(data.Length, (await relay.CallAsync(new Get(id, -1, 0), CancellationToken.None)).Length);
        await relay.CallAsync(new GetToHost(id, 0, WindowBytes / 2, data.Length), CancellationToken.None);
        CollectionAssert.AreEqual(SHA256.HashData(data), SHA256.HashData(relayWindow.Memory.Span.Slice(WindowBytes / 2, data.Length)), "the bytes came back through the node, requests and answers on the ring");
        Assert.IsEmpty(await relay.RelayAsync(FrameType.Release, Traced(new Release(id)), CancellationToken.None), "a relayed one-way request is confirmed by the Sync after it");
        var twice = await Assert.ThrowsExactlyAsync<TubeException>(() => relay.RelayAsync(FrameType.Release, Traced(new Release(id)), CancellationToken.None));
        Assert.IsTrue(twice.Error is TubeError.NotLeased or TubeError.NotFound, $"its refusal came on the ring before the Sync's answer, and is thrown: {twice.Error}");

        // No ring session left: the next relay is served on the socket, as a Hello's would be.
        using var secondWindow = new ClientWindow(WindowBytes);
        await using var second = await RelayAsync(h, secondWindow);
        Assert.IsFalse(second.UsesRing, "MaxRingSessions is 1: on the socket");
        var missing = await Assert.ThrowsExactlyAsync<TubeException>(() => second.CallAsync(new Where(id), CancellationToken.None));
        Assert.AreEqual(TubeError.NotFound, missing.Error, "served all the same");
    }

    /// <summary>A relay's connection as the gateway makes it (GatewayRelay.cs): the node's key, a window, a control ring of 64 KiB, answers completed in place.</summary>
    private static async Task<FaaSTube.Channels.Client.FramedConnection> RelayAsync(NodeHarness h, ClientWindow window)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(h.Socket));
        var relay = new FaaSTube.Channels.Client.FramedConnection(socket, ControlRing.Create(64 << 10), ChildProcess.Timeout, _ => { }, (_, _) => { }, inlineAnswers: true);
        var ok = await relay.GatewayHelloAsync(new GatewayHello(Frames.Version, h.Node.GatewayKey!, "wf", "relayed", window.Length, 0), window.Descriptor, CancellationToken.None).WaitAsync(ChildProcess.Timeout);
        Assert.AreEqual(ok.Ring, relay.UsesRing);
        return relay;
    }

    /// <summary>A request's payload as a relay forwards it: the client's trace context (none), then the request.</summary>
    private static ReadOnlyMemory<byte> Traced(IRequest request)
    {
        var payload = new PayloadWriter();
        TraceContext.None.Write(payload);
        request.Write(payload);
        return payload.Memory;
    }

    [TestMethod]
    public async Task A_wrong_key_a_key_of_another_length_or_a_node_without_a_gateway_is_refused_and_holds_nothing()
    {
        await using var h = await StartAsync();
        var key = h.Node.GatewayKey!;
        using var window = new ClientWindow(WindowBytes);
        var random = Seeds.Create(TestContext);

        var flipped = key.ToArray();
        int bit = random.Next(8 * flipped.Length);
        flipped[bit / 8] ^= (byte)(1 << (bit % 8));
        var wrong = await RefusedAsync(h, GatewayHelloPayload(flipped, "wf", "f", WindowBytes), window.Descriptor);
        Assert.AreEqual(TubeError.AccessDenied, wrong.Error, $"bit {bit} flipped");
        StringAssert.Contains(wrong.Message, "not the node's gateway key");
        Assert.IsFalse(wrong.Message.Contains(Convert.ToHexString(key), StringComparison.OrdinalIgnoreCase), "the answer tells nothing of the key");

        foreach (int length in new[] { GatewayHello.KeyBytes - 1, GatewayHello.KeyBytes + 1 })
        {
            var cut = new byte[length];
            key.AsSpan(0, Math.Min(length, key.Length)).CopyTo(cut);
            var malformed = await RefusedAsync(h, GatewayHelloPayload(cut, "wf", "f", WindowBytes), window.Descriptor);
            Assert.AreEqual(TubeError.BadRequest, malformed.Error, $"a key of {length} bytes is malformed");
            StringAssert.Contains(malformed.Message, $"exactly {GatewayHello.KeyBytes}");
        }

        var otherVersion = new PayloadWriter().U16(Frames.Version - 1).Bytes(key).Str("wf").Str("f").I64(WindowBytes);
        Assert.AreEqual(TubeError.VersionMismatch, (await RefusedAsync(h, otherVersion, window.Descriptor)).Error);
        Assert.AreEqual(TubeError.BadRequest, (await RefusedAsync(h, GatewayHelloPayload(key, "", "f", WindowBytes), window.Descriptor)).Error, "no workflow");
        var closed = await RefusedAsync(h, GatewayHelloPayload(key, "local-only", "f", WindowBytes), window.Descriptor);
        Assert.AreEqual(TubeError.AccessDenied, closed.Error, "a workflow with no remote secret is not opened by the right key either");
        StringAssert.Contains(closed.Message, "not open to remote clients");

        h.Node.GatewayKey = null; // the gateway is gone: no key opens a session any more
        var none = await RefusedAsync(h, GatewayHelloPayload(key, "wf", "f", WindowBytes), window.Descriptor);
        Assert.AreEqual(TubeError.AccessDenied, none.Error);
        StringAssert.Contains(none.Message, "runs no network gateway");

        await AssertStillServesAsync(h);
    }

    [TestMethod]
    public async Task A_gateway_hello_without_exactly_one_sealed_window_is_refused_like_hello()
    {
        await using var h = await StartAsync();
        var key = h.Node.GatewayKey!;
        var hello = GatewayHelloPayload(key, "wf", "f", WindowBytes);
        Assert.AreEqual(TubeError.BadRequest, (await RefusedAsync(h, hello)).Error, "no descriptor");

        using (var a = new ClientWindow(WindowBytes))
        using (var b = new ClientWindow(WindowBytes))
        {
            var two = await RefusedAsync(h, hello, a.Descriptor, b.Descriptor);
            Assert.AreEqual(TubeError.BadRequest, two.Error, "two descriptors (a ring is Hello's only)");
            StringAssert.Contains(two.Message, "exactly one descriptor");
        }

        using (var small = new ClientWindow(2 * 4096))
        {
            Assert.AreEqual(TubeError.BadRequest, (await RefusedAsync(h, hello, small.Descriptor)).Error, "a window smaller than it claims");
        }

        using (var page = SealedSharedMemory.Create(4096))
        {
            var tiny = await RefusedAsync(h, GatewayHelloPayload(key, "wf", "f", 4096), page.Descriptor);
            Assert.AreEqual(TubeError.BadRequest, tiny.Error, "a window under 8 KiB, as a remote client's");
            StringAssert.Contains(tiny.Message, "8 KiB");
        }

        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(file, new byte[WindowBytes]);
            using var regular = File.OpenHandle(file, FileMode.Open, FileAccess.ReadWrite);
            Assert.AreEqual(TubeError.BadRequest, (await RefusedAsync(h, hello, regular)).Error, "a regular file (it cannot be sealed)");
            using var pipe = new System.IO.Pipes.AnonymousPipeServerStream();
            Assert.AreEqual(TubeError.BadRequest, (await RefusedAsync(h, hello, pipe.SafePipeHandle)).Error, "a pipe");
        }
        finally
        {
            File.Delete(file);
        }

        await AssertStillServesAsync(h);
    }

    [TestMethod]
    public async Task Only_the_nodes_own_user_may_send_gateway_hello_even_with_the_key()
    {
        await using var h = await StartAsync();
        uint other = Interop.Libc.getuid() + 1;
        var toNode = new Pipe();
        var fromNode = new Pipe();
        var session = new NodeSession(h.Node, id: 1_000_000, pid: 1, other, inProcess: false); // a second real user is not needed: the node's own handshake code on a session of that uid
        var payload = GatewayHelloPayload(h.Node.GatewayKey!, "wf", "f", WindowBytes).Memory.ToArray();
        new FramedSession(session, toNode.Reader, fromNode.Writer, _ => Task.FromResult<HelloFrame?>(new HelloFrame(FrameType.GatewayHello, 7, payload, [])), transport: null)
            .Start(refusal: null, helloRefusal: null, CancellationToken.None);
        var answer = await Frames.ReadAsync(fromNode.Reader, 1 << 16, CancellationToken.None).AsTask().WaitAsync(ChildProcess.Timeout);
        await session.Completion.WaitAsync(ChildProcess.Timeout);

        Assert.IsNotNull(answer);
        Assert.AreEqual(FrameType.Error, answer.Value.Type);
        Assert.AreEqual(7u, answer.Value.RequestId);
        var error = Payload.Read<Error>(answer.Value.Payload);
        Assert.AreEqual(TubeError.AccessDenied, error.Code);
        StringAssert.Contains(error.Message, $"user {other} sent it");
        Assert.IsFalse(session.IsRemote, "nothing was opened");
    }

    [TestMethod]
    public async Task The_node_counts_relayed_sessions_in_its_own_remote_limits_whatever_the_gateway_lets_through()
    {
        await using var h = await StartAsync(o => (o.MaxRemoteSessions, o.MaxRemoteSessionsPerWorkflow) = (2, 1));
        var key = h.Node.GatewayKey!;
        using var w1 = new ClientWindow(64 << 10);
        using var w2 = new ClientWindow(64 << 10);
        using var w3 = new ClientWindow(64 << 10);
        await using var a = await OpenRelayedAsync(h, key, "wf-a", w1);

        var sameWorkflow = await RefusedAsync(h, GatewayHelloPayload(key, "wf-a", "f", 64 << 10), w2.Descriptor);
        Assert.AreEqual(TubeError.AccessDenied, sameWorkflow.Error, "MaxRemoteSessionsPerWorkflow");
        StringAssert.Contains(sameWorkflow.Message, "wf-a");

        await using var b = await OpenRelayedAsync(h, key, "wf-b", w2);
        var full = await RefusedAsync(h, GatewayHelloPayload(key, "wf-c", "f", 64 << 10), w3.Descriptor);
        Assert.AreEqual(TubeError.AccessDenied, full.Error, "MaxRemoteSessions");
        StringAssert.Contains(full.Message, "remote clients connected");

        var local = await h.ConnectAsync(inProcess: false); // local clients of the gateway's user are not counted with the remote ones
        Assert.AreEqual(3, h.Node.SessionCount);

        var ended = h.SessionEnded(a.SessionId);
        await a.DisposeAsync();
        await ended.WaitAsync(ChildProcess.Timeout);
        await using var c = await OpenRelayedAsync(h, key, "wf-c", w3); // room again
        Assert.AreEqual(2, h.Node.Sessions.Count(s => s.IsRemote));
        Assert.IsNotNull(local);
    }

    [TestMethod]
    public async Task The_node_keeps_its_own_copy_of_a_key_of_exactly_32_bytes()
    {
        await using var h = await StartAsync();
        var key = RandomNumberGenerator.GetBytes(GatewayHello.KeyBytes);
        h.Node.GatewayKey = key;
        key[0] ^= 1; // the caller's array changes after: the node's key does not
        CollectionAssert.AreNotEqual(key, h.Node.GatewayKey);
        key[0] ^= 1;
        CollectionAssert.AreEqual(key, h.Node.GatewayKey);
        Assert.ThrowsExactly<ArgumentException>(() => h.Node.GatewayKey = new byte[GatewayHello.KeyBytes - 1]);
        Assert.ThrowsExactly<ArgumentException>(() => h.Node.GatewayKey = []);
        CollectionAssert.AreEqual(key, h.Node.GatewayKey, "a refused key changes nothing");
    }

    private static Task<NodeHarness> StartAsync(Action<TubeNodeOptions>? configure = null) =>
        StartWithKeyAsync(configure);

    private static async Task<NodeHarness> StartWithKeyAsync(Action<TubeNodeOptions>? configure)
    {
        var h = await NodeHarness.StartAsync(configure: o =>
        {
            // The workflows open to remote clients: a GatewayHello for any other is refused whatever the gateway says.
            o.RemoteSecrets = new[] { "wf", "wf-a", "wf-b", "wf-c" }.ToDictionary(w => w, w => Encoding.UTF8.GetBytes($"the secret of {w}, 16+ bytes"));
            configure?.Invoke(o);
        });
        h.Node.GatewayKey = RandomNumberGenerator.GetBytes(GatewayHello.KeyBytes); // as the gateway's supervisor does before it spawns the gateway
        return h;
    }

    /// <summary>GatewayHello's payload as docs/protocol.md lays it out, written field by field (a key of any length).</summary>
    private static PayloadWriter GatewayHelloPayload(byte[] key, string workflow, string function, long windowBytes, long ringBytes = 0) =>
        new PayloadWriter().U16(Frames.Version).Bytes(key).Str(workflow).Str(function).I64(windowBytes).I64(ringBytes);

    private static async Task<RawConnection> OpenRelayedAsync(NodeHarness h, byte[] key, string workflow, ClientWindow window)
    {
        var connection = await RawConnection.OpenAsync(h.Socket);
        connection.SendFirst(GatewayHelloPayload(key, workflow, "f", window.Length), window.Descriptor);
        connection.SessionId = Payload.Read<HelloOk>(await connection.AnswerAsync()).SessionId;
        return connection;
    }

    /// <summary>A first frame the node refuses: its error, after which the node closed the connection.</summary>
    private static async Task<TubeException> RefusedAsync(NodeHarness h, PayloadWriter payload, params SafeHandle[] descriptors)
    {
        await using var connection = await RawConnection.OpenAsync(h.Socket);
        connection.SendFirst(payload, descriptors);
        var refused = await Assert.ThrowsExactlyAsync<TubeException>(() => connection.AnswerAsync());
        Assert.IsNull(await connection.ReadAsync(), "and then it closed the connection");
        return refused;
    }

    /// <summary>An ordinary client is served after the refusals, and nothing of them is held.</summary>
    private async Task AssertStillServesAsync(NodeHarness h)
    {
        var client = await h.ConnectAsync(inProcess: false);
        var data = Seeds.Create(TestContext).Bytes(64 << 10);
        var back = new byte[data.Length];
        await client.GetAsync(await client.PutAsync(data), back.AsMemory());
        CollectionAssert.AreEqual(SHA256.HashData(data), SHA256.HashData(back), "the node still serves");
        Assert.AreEqual(1, h.Node.SessionCount, "every refused connection was closed");
        Assert.IsFalse(h.Node.Sessions.Any(s => s.IsRemote), "no refused GatewayHello left a session");
        await client.FlushAsync();
        Assert.AreEqual(0, h.Node.PoolOf(0).GetStatistics().InUseBytes, "nothing is held");
    }

    /// <summary>A connection to the node's socket that writes frames by hand.</summary>
    private sealed class RawConnection : IAsyncDisposable
    {
        private readonly Socket _socket;
        private readonly NetworkStream _stream;
        private readonly PipeReader _reader;
        private uint _next = 1;
        private bool _disposed;

        private RawConnection(Socket socket)
        {
            _socket = socket;
            _stream = new NetworkStream(socket, ownsSocket: true);
            _reader = PipeReader.Create(_stream);
        }

        public long SessionId { get; set; }

        public static async Task<RawConnection> OpenAsync(string path)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
            return new RawConnection(socket);
        }

        /// <summary>GatewayHello, request id 1, with <paramref name="descriptors"/> (SCM_RIGHTS).</summary>
        public void SendFirst(PayloadWriter payload, params SafeHandle[] descriptors)
        {
            var frame = Frames.Encode(FrameType.GatewayHello, _next++, payload.Memory.Span);
            if (descriptors.Length == 0)
            {
                _socket.Send(frame);
            }
            else
            {
                UnixRights.Send(_socket, frame, descriptors);
            }
        }

        /// <summary>A request (no trace context), and its answer's payload; an Error is thrown as the <see cref="TubeException"/> it says.</summary>
        public async Task<byte[]> CallAsync(IRequest request)
        {
            Post(request);
            return await AnswerAsync();
        }

        /// <summary>A request sent without waiting (a one-way request).</summary>
        public void Post(IRequest request)
        {
            var payload = new PayloadWriter();
            TraceContext.None.Write(payload);
            request.Write(payload);
            _socket.Send(Frames.Encode(request.Type, _next++, payload.Memory.Span));
        }

        public async Task<byte[]> AnswerAsync()
        {
            var frame = await ReadAsync();
            Assert.IsNotNull(frame, "the node closed without answering");
            if (frame.Value.Type == FrameType.Error)
            {
                var error = Payload.Read<Error>(frame.Value.Payload);
                throw new TubeException(error.Code, error.Message);
            }

            Assert.AreEqual(FrameType.Ok, frame.Value.Type);
            Assert.AreEqual(_next - 1, frame.Value.RequestId, "the answer to the last request");
            return frame.Value.Payload;
        }

        public async Task<(FrameType Type, uint RequestId, byte[] Payload)?> ReadAsync()
        {
            using var timeout = new CancellationTokenSource(ChildProcess.Timeout);
            return await Frames.ReadAsync(_reader, 1 << 16, timeout.Token);
        }

        public async ValueTask DisposeAsync()
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            await _reader.CompleteAsync();
            await _stream.DisposeAsync();
        }
    }
}
