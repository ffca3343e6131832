using System.Net.Sockets;
using FaaSTube.Channels;
using FaaSTube.Channels.Protocol;
using FaaSTube.Kernels;
using FaaSTube.Memory;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>Channels across real processes (the TestChild helper), faults, bad input and access control on the socket.</summary>
[TestClass]
public sealed class CrossProcessChannelTests
{
    public TestContext TestContext { get; set; } = null!;

    private static async Task<string> RunChildAsync(params string[] args)
    {
        using var child = ChildProcess.Start(args);
        var (exit, output) = await child.WaitAsync();
        Assert.AreEqual(0, exit, output);
        return output.Trim();
    }

    [TestMethod]
    public async Task Processes_put_publish_and_get_through_the_node_on_every_path()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        long seed = random.NextInt64(1, long.MaxValue);
        const int Length = (3 << 20) + 5;
        ulong expected = PoolHarness.Expected(Length, (ulong)seed);
        int ended = 0;
        var allEnded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Node.SessionEnded += _ =>
        {
            if (Interlocked.Increment(ref ended) == 6) // two producers, four consumers
            {
                allEnded.TrySetResult();
            }
        };

        var put = TubeId.Parse(await RunChildAsync("tube-put", h.Socket, "wf", Length.ToString(), seed.ToString(), "2"));
        var published = TubeId.Parse(await RunChildAsync("tube-publish", h.Socket, "wf", Length.ToString(), seed.ToString(), "2"));

        // Zero copy on the GPU and through host memory, each from a process of its own, concurrently;
        // both producers have exited by now: their data outlives them.
        var consumers = await Task.WhenAll(
            RunChildAsync("tube-get", h.Socket, "wf", put.ToString(), "0", expected.ToString()),
            RunChildAsync("tube-gethost", h.Socket, "wf", put.ToString(), expected.ToString()),
            RunChildAsync("tube-get", h.Socket, "wf", published.ToString(), "0", expected.ToString()),
            RunChildAsync("tube-gethost", h.Socket, "wf", published.ToString(), expected.ToString()));

        CollectionAssert.AreEqual(new[] { "ok", "ok", "ok", "ok" }, consumers);
        await allEnded.Task.WaitAsync(TimeSpan.FromSeconds(60)); // a process's exit does not mean the node has read its last Release and its close yet
        Assert.AreEqual(0L, h.Node.PoolOf(0).GetStatistics().InUseBytes, "both consumers of each are done: freed");
    }

    [TestMethod]
    public async Task A_killed_consumer_releases_its_lease_and_a_killed_producer_its_allocation()
    {
        await using var h = await NodeHarness.StartAsync();
        var client = await h.ConnectAsync(inProcess: false);
        var id = await client.PutAsync(new byte[1 << 20], new PutOptions { Consumers = 1 });
        long before = h.Node.PoolOf(0).GetStatistics().InUseBytes;

        using (var consumer = ChildProcess.Start("tube-hold", h.Socket, "wf", id.ToString()))
        {
            Assert.AreEqual("ready", await consumer.ReadLineAsync());
            var ended = SessionEndedOnce(h);
            await consumer.KillAsync();
            await ended.WaitAsync(ChildProcess.Timeout);
        }

        using (var producer = ChildProcess.Start("tube-allocate-hold", h.Socket, "wf", (4 << 20).ToString()))
        {
            Assert.AreEqual("ready", await producer.ReadLineAsync());
            Assert.AreEqual(before + (4 << 20), h.Node.PoolOf(0).GetStatistics().InUseBytes);
            var ended = SessionEndedOnce(h);
            await producer.KillAsync();
            await ended.WaitAsync(ChildProcess.Timeout);
        }

        Assert.AreEqual(before, h.Node.PoolOf(0).GetStatistics().InUseBytes, "the dead producer's allocation is gone; the data stays");

        using (var putter = ChildProcess.Start("tube-put-forever", h.Socket, "wf"))
        {
            Assert.AreEqual("ready", await putter.ReadLineAsync());
            var ended = SessionEndedOnce(h);
            await putter.KillAsync(); // mid-Put: a part in flight, or between parts
            await ended.WaitAsync(ChildProcess.Timeout);
        }

        Assert.AreEqual(before, h.Node.PoolOf(0).GetStatistics().InUseBytes, "the unfinished Put of the killed producer was dropped");
        var back = new byte[1 << 20];
        await client.GetAsync(id, back.AsMemory()); // the killed consumer never released: the data is still there for a live one
        await client.FlushAsync();
        Assert.AreEqual(0L, h.Node.PoolOf(0).GetStatistics().InUseBytes);
    }

    [TestMethod]
    public async Task When_the_node_dies_pending_and_later_calls_fail_clearly_and_do_not_hang()
    {
        string socket = Path.Combine(Path.GetTempPath(), $"ft-{Guid.NewGuid():N}"[..20] + ".sock");
        using var nodeProcess = ChildProcess.Start("tube-node", socket);
        Assert.AreEqual("ready", await nodeProcess.ReadLineAsync());
        var client = await TubeClient.ConnectAsync(new TubeClientOptions
        {
            SocketPath = socket,
            Gpus = new FaaSTube.Devices.GpuSystemOptions { Backend = FaaSTube.Devices.GpuBackend.Simulated },
            WindowBytes = 1 << 20,
        });
        var id = await client.PutAsync(new byte[1000]);

        await nodeProcess.KillAsync();

        await Assert.ThrowsAsync<TubeNodeUnavailableException>(async () => await client.WhereAsync(id).WaitAsync(ChildProcess.Timeout));
        await Assert.ThrowsAsync<TubeNodeUnavailableException>(async () => await client.GetAsync(id).WaitAsync(ChildProcess.Timeout));
        await client.DisposeAsync();

        // The socket file the dead node left is stale: a new node takes it over.
        await using var next = await TubeNode.StartAsync(new TubeNodeOptions { SocketPath = socket, Gpus = new() { Backend = FaaSTube.Devices.GpuBackend.Simulated }, SweepInterval = null });
        Assert.AreEqual(socket, next.SocketPath);
    }

    [TestMethod]
    public async Task A_hung_node_fails_calls_after_the_call_timeout_instead_of_hanging_them()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Inconclusive("SIGSTOP is Linux-only here.");
        }

        string socket = Path.Combine(Path.GetTempPath(), $"ft-{Guid.NewGuid():N}"[..20] + ".sock");
        using var nodeProcess = ChildProcess.Start("tube-node", socket);
        Assert.AreEqual("ready", await nodeProcess.ReadLineAsync());
        await using var client = await TubeClient.ConnectAsync(new TubeClientOptions
        {
            SocketPath = socket,
            Gpus = new FaaSTube.Devices.GpuSystemOptions { Backend = FaaSTube.Devices.GpuBackend.Simulated },
            WindowBytes = 1 << 20,
            CallTimeout = TimeSpan.FromSeconds(2),
        });
        var id = await client.PutAsync(new byte[1000]);
        await nodeProcess.StopAsync();
        try
        {
            var error = await Assert.ThrowsAsync<TubeNodeUnavailableException>(async () => await client.WhereAsync(id).WaitAsync(ChildProcess.Timeout));
            StringAssert.Contains(error.Message, "did not answer");
        }
        finally
        {
            nodeProcess.Continue();
        }
    }

    [TestMethod]
    public async Task The_node_leaves_the_options_it_was_given_as_they_were()
    {
        var transfers = new FaaSTube.Transfers.TransferEngineOptions { StagingBytes = 8 << 20, ChunkBytes = 1 << 20 };
        await using var h = await NodeHarness.StartAsync(configure: o => o.Transfers = transfers);

        Assert.AreNotSame(transfers, h.Node.Options.Transfers, "the node runs with its own copy, taken at start");
        Assert.AreSame(h.Node.Router, h.Node.Devices[0].Engine.Router, "the engine reports its host lane to the node's router");
        Assert.AreEqual(1 << 20, h.Node.Devices[0].Engine.Options.ChunkBytes, "everything else as given");
    }

    [TestMethod]
    public async Task A_second_node_on_a_live_socket_is_refused()
    {
        await using var h = await NodeHarness.StartAsync();

        var error = await Assert.ThrowsAsync<InvalidOperationException>(async () => await TubeNode.StartAsync(new TubeNodeOptions
        {
            SocketPath = h.Socket,
            Gpus = new() { Backend = FaaSTube.Devices.GpuBackend.Simulated },
        }));

        StringAssert.Contains(error.Message, "Another FaaSTube node");
        var client = await h.ConnectAsync(inProcess: false);
        Assert.IsGreaterThan(0L, client.SessionId, "the first node still serves");
    }

    [TestMethod]
    public async Task The_socket_is_owner_only_and_other_users_are_refused()
    {
        await using var h = await NodeHarness.StartAsync();
        Assert.AreEqual(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(h.Socket));
        await using var strict = await NodeHarness.StartAsync(configure: o => o.AllowedUids = [uint.MaxValue - 1]);

        var error = await Assert.ThrowsAsync<TubeException>(async () => await strict.ConnectAsync(inProcess: false));

        Assert.AreEqual(TubeError.AccessDenied, error.Error);
    }

    [TestMethod]
    public async Task Garbage_oversized_and_wrong_version_frames_hurt_only_their_sender()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var healthy = await h.ConnectAsync(inProcess: false);
        var data = random.Bytes(300_000);
        var id = await healthy.PutAsync(data, new PutOptions { Consumers = 2 });

        Assert.AreEqual(TubeError.VersionMismatch, (await RawAsync(h.Socket, Frame(FrameType.Hello, new PayloadWriter().U16(99).Str("wf").Str("f").Str("x").I64(1).Memory))).Error);
        Assert.AreEqual(TubeError.FrameTooLarge, (await RawAsync(h.Socket, [0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0, 0])).Error);
        Assert.AreEqual(TubeError.BadRequest, (await RawAsync(h.Socket, Frame(FrameType.Hello, new PayloadWriter().U16(Frames.Version).I32(int.MaxValue).Bytes(random.Bytes(40)).Memory))).Error, "a string longer than its frame");
        Assert.AreEqual(TubeError.BadRequest, (await RawAsync(h.Socket, Frame(FrameType.Get, new byte[3]))).Error, "Get before Hello");
        Assert.AreEqual(TubeError.BadRequest, (await RawAsync(h.Socket, Frame(FrameType.Hello, new PayloadWriter().U16(Frames.Version).Str("wf").Str("f").Str("../../etc/passwd").I64(4096).Memory))).Error, "a window outside shared memory");

        var back = new byte[data.Length];
        await healthy.GetAsync(id, back.AsMemory());
        CollectionAssert.AreEqual(data, back, "the healthy client's data is intact");
    }

    [TestMethod]
    public async Task Forged_requests_after_hello_get_errors_and_the_session_goes_on()
    {
        await using var h = await NodeHarness.StartAsync();
        var client = await h.ConnectAsync(inProcess: false);
        var id = await client.PutAsync(new byte[1 << 20], new PutOptions { Consumers = 2 });
        await using var held = await client.GetAsync(id);

        // A slab this client never opened, and one of a GPU that does not exist.
        var closed = await Assert.ThrowsAsync<TubeException>(async () => await client.GetAsync(id, device: 7));
        Assert.AreEqual(TubeError.BadRequest, closed.Error);
        Assert.AreEqual(TubeError.NotFound, (await Assert.ThrowsAsync<TubeException>(async () => await client.DeleteAsync(TubeId.NewId()))).Error);

        using var stream = held.Device.CreateStream();
        Assert.AreEqual(DataChecksum.Compute(new byte[1 << 20]), await stream.ChecksumAsync(held.Memory), "the session still works");
    }

    [TestMethod]
    public async Task Forged_descriptors_and_ranges_are_refused_and_nothing_is_touched()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var owner = await h.ConnectAsync(inProcess: false);
        var intruder = await h.ConnectAsync(inProcess: false);
        var data = random.Bytes(1 << 20);
        var id = await owner.PutAsync(data, new PutOptions { Consumers = 2 });
        await using var held = await intruder.GetAsync(id);
        int slab = h.Node.PoolOf(0).GetSlabs().Single().Id;

        async Task<TubeError> Refused(FrameType type, PayloadWriter payload) =>
            (await Assert.ThrowsAsync<TubeException>(async () => await intruder.CallRawAsync(type, payload))).Error;

        Assert.AreEqual(TubeError.BadRequest, await Refused(FrameType.SlabClosed, new PayloadWriter().I32(0).I32(slab + 1).I32(1)), "a slab it never opened");
        Assert.AreEqual(TubeError.BadRequest, await Refused(FrameType.SlabClosed, new PayloadWriter().I32(0).I32(slab).I32(99)), "a wrong generation");
        Assert.AreEqual(TubeError.BadRequest, await Refused(FrameType.GetToHost, new PayloadWriter().Id(id).I64(data.Length - 10).I32(0).I32(100)), "a range past the data");
        Assert.AreEqual(TubeError.BadRequest, await Refused(FrameType.GetToHost, new PayloadWriter().Id(id).I64(0).I32(-4096).I32(100)), "a window offset outside the window");
        Assert.AreEqual(TubeError.NotLeased, await Refused(FrameType.GetToHost, new PayloadWriter().Id(TubeId.NewId()).I64(0).I32(0).I32(100)), "data it holds no lease on");
        Assert.AreEqual(TubeError.AccessDenied, await Refused(FrameType.PutPart, new PayloadWriter().Id(id).I64(0).I32(0).I32(100).Str("").I64(0)), "writing into another client's finished data");
        Assert.AreEqual(TubeError.BadRequest, await Refused(FrameType.Get, new PayloadWriter().Id(id)), "a truncated payload");

        var back = new byte[data.Length];
        await owner.GetAsync(id, back.AsMemory());
        CollectionAssert.AreEqual(data, back, "nothing was touched");
    }

    [TestMethod]
    public async Task Each_slab_is_opened_once_per_client_and_retired_end_to_end()
    {
        await using var h = await NodeHarness.StartAsync();
        var producer = await h.ConnectAsync(inProcess: false);
        var consumer = await h.ConnectAsync(inProcess: false);
        var ids = new List<TubeId>();
        for (int i = 0; i < 5; i++)
        {
            ids.Add(await producer.PutAsync(new byte[1 << 20]));
        }

        foreach (var id in ids)
        {
            await using var buffer = await consumer.GetAsync(id);
        }

        await consumer.FlushAsync();
        Assert.AreEqual(1, consumer.SlabsOpened, "five blocks in one slab: one IPC open");
        var pool = h.Node.PoolOf(0);
        var slab = pool.GetSlabs().Single();
        CollectionAssert.Contains(slab.Importers.ToArray(), new LeaseHolder(consumer.SessionId));
        var freed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        pool.SlabFreed += (_, _) => freed.TrySetResult();

        h.Clock.Advance(TimeSpan.FromMinutes(10)); // all consumed: the slab is empty and idle
        pool.Trim();

        await freed.Task.WaitAsync(ChildProcess.Timeout); // the node told the consumer, which closed its mapping
        Assert.AreEqual(0, pool.GetSlabs().Count);
        Assert.AreEqual(0L, pool.GetStatistics().ReservedBytes);
    }

    /// <summary>Completes when the next session ends.</summary>
    private static Task SessionEndedOnce(NodeHarness h)
    {
        var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Node.SessionEnded += _ => ended.TrySetResult();
        return ended.Task;
    }

    private static byte[] Frame(FrameType type, ReadOnlyMemory<byte> payload)
    {
        var frame = new byte[9 + payload.Length];
        BitConverter.TryWriteBytes(frame.AsSpan(0, 4), 5 + payload.Length);
        frame[4] = (byte)type;
        BitConverter.TryWriteBytes(frame.AsSpan(5, 4), 1u);
        payload.Span.CopyTo(frame.AsSpan(9));
        return frame;
    }

    /// <summary>Sends raw bytes on a fresh connection and returns the error the node answers with.</summary>
    private static async Task<TubeException> RawAsync(string path, byte[] bytes)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
        await socket.SendAsync(bytes);
        var reply = new byte[4096];
        int n = 0;
        using var timeout = new CancellationTokenSource(ChildProcess.Timeout);
        while (n < 9 || n < 4 + BitConverter.ToInt32(reply, 0))
        {
            int got = await socket.ReceiveAsync(reply.AsMemory(n), timeout.Token);
            Assert.AreNotEqual(0, got, "the node closed without an answer");
            n += got;
        }

        Assert.AreEqual((byte)FrameType.Error, reply[4]);
        var r = new PayloadReader(reply.AsSpan(9, BitConverter.ToInt32(reply, 0) - 5));
        return new TubeException((TubeError)r.U16(), r.Str());
    }
}
