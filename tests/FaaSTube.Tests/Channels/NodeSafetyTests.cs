using System.Net.Sockets;
using System.Runtime.InteropServices;
using FaaSTube.Channels;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Transport;
using FaaSTube.Devices;
using FaaSTube.Kernels;
using FaaSTube.Native;
using FaaSTube.Platform;
using FaaSTube.Tests.Support;
using Microsoft.Win32.SafeHandles;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// The node against a hostile or dying client, one test per way a client once hurt the node or
/// another workflow (issue "The node trusts its clients"): windows by capability, copies that hold
/// what they copy, requests bounded per connection, validation before state, sessions that wait for
/// their own work. The fuzz, kill and soak runs are in the Hostile* tests and the bench project.
/// </summary>
[TestClass]
public sealed class NodeSafetyTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task Hello_names_no_file_and_its_window_must_be_sealed_anonymous_memory_of_the_size_it_claims()
    {
        await using var h = await NodeHarness.StartAsync();
        var hello = new PayloadWriter().U16(Frames.Version).Str("wf").Str("f").I64(1 << 20);

        Assert.AreEqual(TubeError.VersionMismatch, (await HelloAsync(h.Socket, new PayloadWriter().U16(1).Str("wf").Str("f").Str("faastube-win.1.x").I64(4096), null)).Error,
            "a version-1 Hello (which named a window file) is refused before anything is opened");
        Assert.AreEqual(TubeError.BadRequest, (await HelloAsync(h.Socket, hello, null)).Error, "no descriptor");

        using (var unsealed = Memfd(1 << 20, seal: false))
        {
            Assert.AreEqual(TubeError.BadRequest, (await HelloAsync(h.Socket, hello, unsealed)).Error, "a memfd the client could still shrink");
        }

        using (var wrongSize = Memfd(4096, seal: true))
        {
            Assert.AreEqual(TubeError.BadRequest, (await HelloAsync(h.Socket, hello, wrongSize)).Error, "a window smaller than it claims");
        }

        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(file, new byte[1 << 20]);
            using var regular = File.OpenHandle(file, FileMode.Open, FileAccess.ReadWrite);
            Assert.AreEqual(TubeError.BadRequest, (await HelloAsync(h.Socket, hello, regular)).Error, "a regular file (it cannot be sealed)");
            using var pipe = new System.IO.Pipes.AnonymousPipeServerStream();
            Assert.AreEqual(TubeError.BadRequest, (await HelloAsync(h.Socket, hello, pipe.SafePipeHandle)).Error, "a pipe");
        }
        finally
        {
            File.Delete(file);
        }

        using (var window = Memfd(1 << 20, seal: true))
        {
            var invalid = new PayloadWriter().U16(Frames.Version).Bytes([0x77, 0x66, 0xff]).Str("f").I64(1 << 20);
            Assert.AreEqual(TubeError.BadRequest, (await HelloAsync(h.Socket, invalid, window)).Error, "a workflow name that is not UTF-8");
            Assert.AreEqual(-1, Interop.Libc.ftruncate((int)window.DangerousGetHandle(), 0), "a sealed window cannot be truncated under the node's copies");
        }

        var healthy = await h.ConnectAsync(inProcess: false);
        var data = Seeds.Create(TestContext).Bytes(3 << 20);
        var back = new byte[data.Length];
        await healthy.GetAsync(await healthy.PutAsync(data), back.AsMemory());
        CollectionAssert.AreEqual(data, back, "the node still serves");
        Assert.AreEqual(1, h.Node.SessionCount, "every refused connection was closed");
    }

    [TestMethod]
    public async Task A_release_racing_a_copy_to_the_host_cannot_free_the_block_under_it()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var reader = await h.ConnectAsync(inProcess: false, workflow: "a");
        var writer = await h.ConnectAsync(inProcess: false, workflow: "b");
        const int Length = 1 << 20;
        for (int round = 0; round < 20; round++)
        {
            var mine = random.Bytes(Length);
            var id = await reader.PutAsync(mine, new PutOptions { Consumers = 1 });
            await reader.CallRawAsync(FrameType.Get, new PayloadWriter().Id(id).I32(-1).I32(0));
            reader.WindowMemory.Span[..Length].Clear();

            // The copy out and the Release go out back to back; another workflow puts meanwhile.
            var copy = reader.CallRawAsync(FrameType.GetToHost, new PayloadWriter().Id(id).I64(0).I32(0).I32(Length));
            var release = reader.CallRawAsync(FrameType.Release, new PayloadWriter().Id(id));
            var other = writer.PutAsync(random.Bytes(Length), new PutOptions { Consumers = 1 });
            await release;
            await other;
            try
            {
                await copy;
                CollectionAssert.AreEqual(mine, reader.WindowMemory[..Length].ToArray(), $"round {round}: the copy read its own data, whole");
            }
            catch (TubeException e) when (e.Error is TubeError.BadRequest or TubeError.NotLeased)
            {
                Assert.IsFalse(reader.WindowMemory.Span[..Length].ContainsAnyExcept((byte)0), $"round {round}: a refused copy wrote nothing");
            }
        }
    }

    [TestMethod]
    public async Task A_client_maps_only_its_own_workflows_slabs_and_new_memory_holds_no_earlier_bytes()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var a = await h.ConnectAsync(inProcess: false, workflow: "a");
        var b = await h.ConnectAsync(inProcess: false, workflow: "b");
        var secret = random.Bytes(4 << 20);
        var consumed = await a.PutAsync(secret, new PutOptions { Consumers = 1 });
        await a.GetAsync(consumed, new byte[secret.Length].AsMemory()); // consumed: its range is free again
        var live = await a.PutAsync(secret, new PutOptions { Consumers = 2 });
        await using var aMapped = await a.GetAsync(live);

        // b's allocation and b's Put without parts: neither lands in a slab a's data lives in.
        await using var bMapped = await b.AllocateAsync(4096);
        var empty = new PayloadReader(await b.CallRawAsync(FrameType.PutBegin, new PayloadWriter().I64(secret.Length).I32(0))).Id();
        await b.CallRawAsync(FrameType.PutCommit, new PayloadWriter().Id(empty).I32(1).I64(0).U8(0));
        var seen = new byte[secret.Length];
        await b.GetAsync(empty, seen.AsMemory());

        var slabs = h.Node.PoolOf(0).GetSlabs();
        Assert.AreNotEqual(aMapped.Slab, bMapped.Slab, "a different slab");
        Assert.AreEqual("a", slabs.Single(s => s.Id == aMapped.Slab.Slab).Partition);
        Assert.AreEqual("b", slabs.Single(s => s.Id == bMapped.Slab.Slab).Partition);
        Assert.IsTrue(slabs.All(s => s.Partition is "a" or "b"), "every slab belongs to one workflow");
        Assert.AreEqual(1, slabs.Count(s => s.Partition == "b"));
        Assert.IsFalse(seen.AsSpan().ContainsAnyExcept((byte)0), "b's unwritten memory holds none of a's bytes");
    }

    [TestMethod]
    public async Task A_size_no_gpu_could_hold_fails_at_once_and_evicts_nobody()
    {
        await using var h = await NodeHarness.StartAsync(configure: o => o.Pool.MaxBytes = 32 << 20);
        var owner = await h.ConnectAsync(inProcess: false, workflow: "a");
        var data = Seeds.Create(TestContext).Bytes(8 << 20);
        var id = await owner.PutAsync(data);
        var hog = await h.ConnectAsync(inProcess: false, workflow: "b");
        var before = h.Node.PoolOf(0).GetStatistics();

        foreach (long size in new[] { long.MaxValue, long.MaxValue - 200, 1L << 40, (32L << 20) + 1 })
        {
            foreach (var type in new[] { FrameType.PutBegin, FrameType.Allocate })
            {
                var refused = await Assert.ThrowsAsync<TubeException>(async () => await hog.CallRawAsync(type, new PayloadWriter().I64(size).I32(0)));
                Assert.AreEqual(TubeError.TooLarge, refused.Error, $"{type} of {size} bytes");
            }
        }

        var after = h.Node.PoolOf(0).GetStatistics();
        Assert.AreEqual(before.Evictions, after.Evictions, "nobody was evicted for it");
        Assert.AreEqual(before.InUseBytes, after.InUseBytes);
        Assert.AreEqual(before.ReservedBytes, after.ReservedBytes, "the pool did not grow for it");
        var back = new byte[data.Length];
        await owner.GetAsync(id, back.AsMemory());
        CollectionAssert.AreEqual(data, back);
    }

    [TestMethod]
    public async Task Data_kept_until_deleted_stays_on_the_gpu_under_pressure()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(configure: o => o.Pool.MaxBytes = 32 << 20);
        var client = await h.ConnectAsync(inProcess: false);
        var model = random.Bytes(8 << 20);
        var kept = await client.PutAsync(model, new PutOptions { KeepUntilDeleted = true });
        var others = new List<(TubeId Id, byte[] Data)>();
        for (int i = 0; i < 6; i++)
        {
            var data = random.Bytes(8 << 20);
            others.Add((await client.PutAsync(data), data)); // 56 MiB through 32: evictions
        }

        Assert.IsTrue(h.Node.PoolOf(0).GetStatistics().Evictions > 0, "there was pressure");
        Assert.IsTrue(h.Node.Directory.TryFind("wf", kept)!.Block.IsResident, "the data kept until deleted was never evicted");
        foreach (var (id, data) in others)
        {
            var back = new byte[data.Length];
            await client.GetAsync(id, back.AsMemory());
            CollectionAssert.AreEqual(data, back, "evicted data comes back whole");
        }

        await using var got = await client.GetAsync(kept);
        using var stream = got.Device.CreateStream();
        Assert.AreEqual(DataChecksum.Compute(model), await stream.ChecksumAsync(got.Memory));
    }

    [TestMethod]
    public async Task A_ttl_the_clock_cannot_hold_is_refused_before_anything_is_held()
    {
        await using var h = await NodeHarness.StartAsync();
        var client = await h.ConnectAsync(inProcess: false);
        var pool = h.Node.PoolOf(0);
        for (int i = 0; i < 20; i++)
        {
            var id = new PayloadReader(await client.CallRawAsync(FrameType.PutBegin, new PayloadWriter().I64(1 << 20).I32(0))).Id();
            foreach (long ttl in new[] { long.MaxValue, -1, TimeSpan.FromDays(3651).Ticks })
            {
                var refused = await Assert.ThrowsAsync<TubeException>(async () => await client.CallRawAsync(FrameType.PutCommit, new PayloadWriter().Id(id).I32(1).I64(ttl).U8(0)));
                Assert.AreEqual(TubeError.BadRequest, refused.Error);
                Assert.IsFalse(refused.Message.Contains("   at ", StringComparison.Ordinal), "no stack trace reaches the client");
            }

            await client.CallRawAsync(FrameType.Release, new PayloadWriter().Id(id)); // the unfinished Put goes
        }

        Assert.AreEqual(0, pool.GetStatistics().InUseBytes, "nothing leaked");
        Assert.AreEqual(0, pool.GetStatistics().Blocks);
    }

    [TestMethod]
    public async Task Requests_running_for_one_connection_are_bounded_and_all_are_answered()
    {
        await using var h = await NodeHarness.StartAsync(configure: o =>
        {
            o.MaxRequestsInFlight = 4;
            o.Pool.MaxBytes = 16 << 20;
            o.Pool.AllocationTimeout = TimeSpan.FromMinutes(2);
        });
        var owner = await h.ConnectAsync(inProcess: false, workflow: "filler");
        var filler = await owner.PutAsync(new byte[16 << 20], new PutOptions { Consumers = 1 });
        var held = await owner.GetAsync(filler); // in use: it cannot be evicted
        var hog = await h.ConnectAsync(inProcess: false);

        // 40 allocations that must wait for memory: only 4 may run; the rest wait unread.
        var fourRunning = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Node.RequestStarted += running =>
        {
            if (running == 4)
            {
                fourRunning.TrySetResult();
            }
        };
        var calls = Enumerable.Range(0, 40).Select(_ => hog.CallRawAsync(FrameType.Allocate, new PayloadWriter().I64(64 << 10).I32(0))).ToList();
        var answered = hog.WhereAsync(filler); // queued behind them, on the same connection
        await fourRunning.Task.WaitAsync(ChildProcess.Timeout);
        Assert.IsFalse(answered.IsCompleted);
        await held.DisposeAsync(); // its one consumer is done: the memory is free
        await Task.WhenAll(calls);
        await Assert.ThrowsAsync<TubeException>(async () => await answered, "another workflow's id is not found, once its turn came");

        Assert.AreEqual(4, h.Node.PeakRequestsPerSession, $"peak {h.Node.PeakRequestsPerSession}: never more than the limit ran at once, and the limit was reached");
    }

    /// <summary>
    /// A call that names a window range (here a PutWhole waiting for memory) and gets no answer within
    /// the call timeout ends the connection: the caller gives the range back, and the node must not
    /// copy out of it later for a request nobody waits for. The node ends the session, its waiting
    /// request with it; every later call fails at once.
    /// </summary>
    [TestMethod]
    [DataRow(0)]
    [DataRow(64 << 10)]
    public async Task A_call_naming_a_window_range_that_times_out_ends_the_connection(int controlRingBytes)
    {
        await using var h = await NodeHarness.StartAsync(configure: o =>
        {
            o.Pool.MaxBytes = 16 << 20;
            o.Pool.AllocationTimeout = TimeSpan.FromMinutes(2);
        });
        var owner = await h.ConnectAsync(inProcess: false, workflow: "filler");
        var filler = await owner.PutAsync(new byte[16 << 20], new PutOptions { Consumers = 1 });
        var held = await owner.GetAsync(filler); // in use: it cannot be evicted, so the next allocation waits
        await using var client = await TubeClient.ConnectAsync(new TubeClientOptions
        {
            ControlRingBytes = controlRingBytes,
            SocketPath = h.Socket,
            Workflow = "wf",
            Function = "f",
            WindowBytes = 2 << 20,
            CallTimeout = TimeSpan.FromSeconds(5), // the Hello too, on a loaded machine; the allocation waits minutes
            Gpus = new GpuSystemOptions { Backend = h.Node.Gpus.Backend, SimulatedTopology = h.Node.Gpus.Topology },
        });
        var ended = h.SessionEnded(client.SessionId);

        var timedOut = await Assert.ThrowsExactlyAsync<TubeNodeUnavailableException>(() => client.PutAsync(new byte[4096])); // one PutWhole, waiting for memory
        TestContext.WriteLine(timedOut.Message);
        await ended.WaitAsync(TimeSpan.FromMinutes(1)); // the node ended the session, and its waiting request with it (before the fix it waited for the allocation)
        await Assert.ThrowsExactlyAsync<TubeNodeUnavailableException>(() => client.WhereAsync(filler));

        await held.DisposeAsync();
        await owner.FlushAsync();
        Assert.AreEqual(0, h.Node.PoolOf(0).GetStatistics().InUseBytes, "nothing of the timed-out Put was left");
    }

    [TestMethod]
    public async Task A_client_that_leaves_while_its_allocation_waits_for_memory_leaks_nothing()
    {
        await using var h = await NodeHarness.StartAsync(configure: o =>
        {
            o.Pool.MaxBytes = 16 << 20;
            o.Pool.AllocationTimeout = TimeSpan.FromMinutes(2);
        });
        var owner = await h.ConnectAsync(inProcess: false, workflow: "filler");
        var filler = await owner.PutAsync(new byte[16 << 20], new PutOptions { Consumers = 1 });
        var held = await owner.GetAsync(filler); // in use: it cannot be evicted
        var pool = h.Node.PoolOf(0);
        long before = pool.GetStatistics().InUseBytes;

        for (int i = 0; i < 10; i++)
        {
            var leaving = await h.ConnectAsync(inProcess: i % 2 == 0);
            var ended = h.SessionEnded(leaving.SessionId);
            var waiting = leaving.CallRawAsync(FrameType.Allocate, new PayloadWriter().I64(4 << 20).I32(0));
            var put = leaving.PutAsync(new byte[2 << 20]);
            await leaving.DisposeAsync();
            await ended; // the session ends only after its waiting requests did
            await Assert.ThrowsAsync<TubeNodeUnavailableException>(async () => await waiting);
            await Assert.ThrowsAsync<TubeNodeUnavailableException>(async () => await put);
        }

        Assert.AreEqual(before, pool.GetStatistics().InUseBytes, "no block was registered after its session's cleanup");
        await held.DisposeAsync();
        await owner.FlushAsync();
        Assert.AreEqual(0, pool.GetStatistics().InUseBytes);
        Assert.AreEqual(0, pool.GetStatistics().Blocks);
    }

    [TestMethod]
    public async Task Disposing_a_buffer_after_the_node_is_gone_does_not_hide_the_first_error()
    {
        var h = await NodeHarness.StartAsync();
        var client = await h.ConnectAsync(inProcess: false);
        var id = await client.PutAsync(new byte[1 << 20]);
        var buffer = await client.GetAsync(id);
        await h.Node.DisposeAsync();
        await Assert.ThrowsAsync<TubeNodeUnavailableException>(async () => await client.WhereAsync(id));
        await buffer.DisposeAsync(); // must not throw: the lease went with the connection
        await h.DisposeAsync();
    }

    [TestMethod]
    public async Task The_node_accepts_again_after_running_out_of_file_descriptors()
    {
        const int Limit = 200;
        string socket = Path.Combine(Path.GetTempPath(), $"ft-{Guid.NewGuid():N}"[..20] + ".sock");
        using var node = ChildProcess.StartLimited(Limit, "tube-node", socket);
        Assert.AreEqual("ready", await node.ReadLineAsync());

        // Connections that never say Hello, until the node's descriptors are all used.
        var idle = new List<Socket>();
        try
        {
            while (idle.Count < 4 * Limit && !await node.HasOpenDescriptorsAsync(Limit - 2))
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                idle.Add(s);
                using var quick = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                try
                {
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), quick.Token);
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException)
                {
                    // The backlog is full for now: the node accepts from it as it can.
                }
            }

            Assert.IsTrue(await node.WaitForOpenDescriptorsAsync(Limit - 2), $"the node reached its limit of {Limit} descriptors");
        }
        finally
        {
            idle.ForEach(s => s.Dispose());
        }

        Assert.IsTrue(await node.WaitForOpenDescriptorsAsync(Limit / 2, below: true), "the node closed the connections that left");

        await using var healthy = await TubeClient.ConnectAsync(new TubeClientOptions { SocketPath = socket, Workflow = "wf", WindowBytes = 1 << 20, CallTimeout = TimeSpan.FromSeconds(30) });
        var data = Seeds.Create(TestContext).Bytes(1 << 20);
        var back = new byte[data.Length];
        await healthy.GetAsync(await healthy.PutAsync(data), back.AsMemory());
        CollectionAssert.AreEqual(data, back, "the node serves again once descriptors are free");
    }

    [TestMethod]
    public async Task A_node_host_stopped_with_sigterm_frees_its_memory_and_removes_its_socket()
    {
        string socket = Path.Combine(Path.GetTempPath(), $"ft-{Guid.NewGuid():N}"[..20] + ".sock");
        using var host = ChildProcess.StartProgram("FaaSTube.Samples.NodeHost", "--socket", socket, "--backend", "simulated");
        string line;
        while (!(line = await host.ReadLineAsync()).StartsWith("FaaSTube node on", StringComparison.Ordinal))
        {
            Assert.IsFalse(line.StartsWith("(end of output", StringComparison.Ordinal), line);
        }

        using (var producer = ChildProcess.Start("tube-put", socket, "wf", (3 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture), "7", "1"))
        {
            Assert.AreEqual(0, (await producer.WaitAsync()).ExitCode, "data is on the node: it holds slabs");
        }

        string slabs = $"faastube-sim.{host.Id}.";
        Assert.IsTrue(Directory.EnumerateFiles("/dev/shm", slabs + "*").Any(), "the node's simulated GPU memory");
        host.Terminate();
        var (exit, output) = await host.WaitAsync();
        Assert.AreEqual(0, exit, output);
        Assert.IsFalse(Directory.EnumerateFiles("/dev/shm", slabs + "*").Any(), "its memory went back");
        Assert.IsFalse(File.Exists(socket), "its socket is gone");
    }

    [TestMethod]
    public async Task A_client_that_never_reads_its_replies_cannot_hold_up_the_nodes_stop()
    {
        var h = await NodeHarness.StartAsync();
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(h.Socket));
        using var window = Memfd(1 << 20, seal: true);
        UnixRights.Send(socket, Frames.Encode(FrameType.Hello, 1, new PayloadWriter().U16(Frames.Version).Str("wf").Str("f").I64(1 << 20).I64(0).Memory.Span), window);

        // Requests whose answers pile up unread until the socket's buffers are full and replies block.
        var where = Frames.Encode(FrameType.Where, 2, new PayloadWriter().Str("").Str("").Id(TubeId.NewId()).Memory.Span); // no trace context, then the request
        var burst = Enumerable.Range(0, 20_000).SelectMany(_ => where).ToArray();
        using var sending = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await socket.SendAsync(burst, sending.Token);
        }
        catch (OperationCanceledException)
        {
            // The node stopped reading: its replies are blocked on us, as intended.
        }

        await h.Node.DisposeAsync().AsTask().WaitAsync(ChildProcess.Timeout); // must not wait for the reader that never comes
        Assert.AreEqual(0, h.Node.SessionCount);
        await h.DisposeAsync();
    }

    [TestMethod]
    public async Task A_workflow_is_only_as_open_as_the_nodes_policy_says()
    {
        await using var h = await NodeHarness.StartAsync(configure: o => o.AuthorizeWorkflow = (client, workflow) => workflow == "allowed" && client.Pid > 0);
        var allowed = await h.ConnectAsync(inProcess: false, workflow: "allowed");
        Assert.AreEqual(0, await allowed.WhereAsync(await allowed.PutAsync(new byte[4096])));
        var refused = await Assert.ThrowsAsync<TubeException>(async () => await h.ConnectAsync(inProcess: false, workflow: "someone-elses"));
        Assert.AreEqual(TubeError.AccessDenied, refused.Error);
    }

    [TestMethod]
    public async Task A_client_holds_at_most_the_leases_the_node_allows_one_connection()
    {
        await using var h = await NodeHarness.StartAsync(configure: o => o.MaxHeldPerSession = 8);
        var client = await h.ConnectAsync(inProcess: false);
        var id = await client.PutAsync(new byte[4096], new PutOptions { KeepUntilDeleted = true });
        var held = new List<TubeBuffer>();
        for (int i = 0; i < 8; i++)
        {
            held.Add(await client.GetAsync(id));
        }

        var refused = await Assert.ThrowsAsync<TubeException>(async () => await client.GetAsync(id));
        Assert.AreEqual(TubeError.BadRequest, refused.Error);
        Assert.AreEqual(TubeError.BadRequest, (await Assert.ThrowsAsync<TubeException>(async () => await client.AllocateAsync(4096))).Error);
        await held[0].DisposeAsync();
        await using var again = await client.GetAsync(id); // room again
        Assert.AreEqual(4096L, again.Memory.Length);
        foreach (var buffer in held.Skip(1))
        {
            await buffer.DisposeAsync();
        }
    }

    [TestMethod]
    public async Task An_out_of_memory_answer_tells_nothing_about_other_tenants()
    {
        await using var h = await NodeHarness.StartAsync(configure: o =>
        {
            o.Pool.MaxBytes = 16 << 20;
            o.Pool.AllocationTimeout = TimeSpan.Zero;
        });
        var owner = await h.ConnectAsync(inProcess: false, workflow: "secret-workflow", function: "secret-function");
        var held = await owner.GetAsync(await owner.PutAsync(new byte[16 << 20]));
        var other = await h.ConnectAsync(inProcess: false, workflow: "b");
        var refused = await Assert.ThrowsAsync<TubeException>(async () => await other.PutAsync(new byte[4 << 20]));
        Assert.AreEqual(TubeError.OutOfMemory, refused.Error);
        StringAssert.Contains(refused.Message, "reference");
        Assert.IsFalse(refused.Message.Contains("secret", StringComparison.Ordinal), refused.Message);
        await held.DisposeAsync();
    }

    [TestMethod]
    public async Task A_client_does_not_hand_its_window_to_a_listener_of_another_user()
    {
        await using var h = await NodeHarness.StartAsync();
        var options = new TubeClientOptions { SocketPath = h.Socket, Workflow = "wf", WindowBytes = 1 << 20, NodeUid = FaaSTube.Native.Interop.Libc.getuid() + 1 };
        var refused = await Assert.ThrowsAsync<TubeNodeUnavailableException>(async () => await TubeClient.ConnectAsync(options));
        StringAssert.Contains(refused.Message, "runs as user", "refused before Hello: the window was never sent");
    }

    [TestMethod]
    public async Task A_client_that_ignores_close_slab_is_ended_and_the_slab_goes_back()
    {
        await using var h = await NodeHarness.StartAsync(configure: o => o.SlabCloseTimeout = TimeSpan.FromMilliseconds(200));
        var stubborn = await h.ConnectAsync(inProcess: false);
        var ended = h.SessionEnded(stubborn.SessionId);

        // Allocate by hand: the node counts the slab as opened by this client, which never maps it and so never closes it.
        var id = new PayloadReader(await stubborn.CallRawAsync(FrameType.Allocate, new PayloadWriter().I64(4096).I32(0))).Id();
        await stubborn.CallRawAsync(FrameType.Release, new PayloadWriter().Id(id));
        var pool = h.Node.PoolOf(0);
        var freed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        pool.SlabFreed += (_, _) => freed.TrySetResult();

        h.Clock.Advance(TimeSpan.FromMinutes(10)); // empty and idle: the slab retires, the client is told to close it
        pool.Trim();

        await ended.WaitAsync(ChildProcess.Timeout);
        await freed.Task.WaitAsync(ChildProcess.Timeout);
        Assert.AreEqual(0L, pool.GetStatistics().ReservedBytes, "the slab went back to the device");
        await Assert.ThrowsAsync<TubeNodeUnavailableException>(async () => await stubborn.WhereAsync(id));
    }

    [TestMethod]
    public async Task A_workflow_holds_at_most_its_quota_and_the_others_keep_theirs()
    {
        await using var h = await NodeHarness.StartAsync(configure: o => o.Pool.MaxPartitionBytes = 8 << 20);
        var greedy = await h.ConnectAsync(inProcess: false, workflow: "greedy");
        var other = await h.ConnectAsync(inProcess: false, workflow: "other");
        var kept = await greedy.PutAsync(new byte[6 << 20], new PutOptions { KeepUntilDeleted = true });
        var refused = await Assert.ThrowsAsync<TubeException>(async () => await greedy.PutAsync(new byte[4 << 20], new PutOptions { KeepUntilDeleted = true }));
        Assert.AreEqual(TubeError.OutOfMemory, refused.Error);
        StringAssert.Contains(refused.Message, "quota");
        Assert.IsFalse(refused.Message.Contains("other", StringComparison.Ordinal), "it names only its own workflow");

        var data = Seeds.Create(TestContext).Bytes(6 << 20);
        var back = new byte[data.Length];
        await other.GetAsync(await other.PutAsync(data), back.AsMemory());
        CollectionAssert.AreEqual(data, back, "another workflow has its own quota");

        await greedy.DeleteAsync(kept);
        await greedy.DeleteAsync(await greedy.PutAsync(new byte[4 << 20], new PutOptions { KeepUntilDeleted = true })); // room again once its data went
        Assert.AreEqual(0, h.Node.PoolOf(0).GetStatistics().InUseBytes);
    }

    [TestMethod]
    public async Task A_producer_that_publishes_and_disposes_its_buffer_closes_the_slab_when_told()
    {
        await using var h = await NodeHarness.StartAsync(configure: o => o.SlabCloseTimeout = TimeSpan.FromSeconds(20));
        var producer = await h.ConnectAsync(inProcess: false);
        var consumer = await h.ConnectAsync(inProcess: false);
        TubeId id;
        await using (var output = await producer.AllocateAsync(1 << 20))
        {
            using var stream = output.Device.CreateStream();
            await stream.FillPatternAsync(output.Memory, 7);
            id = await producer.PublishAsync(output, stream, new PutOptions { Consumers = 1 });
        } // published, then disposed: the mapping must be given up once, not twice

        await using (var got = await consumer.GetAsync(id))
        {
            Assert.AreEqual(1L << 20, got.Memory.Length);
        } // its one consumer is done: the slab is empty

        await consumer.FlushAsync();
        var pool = h.Node.PoolOf(0);
        var freed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        pool.SlabFreed += (_, _) => freed.TrySetResult();
        h.Clock.Advance(TimeSpan.FromMinutes(10));
        pool.Trim();
        await freed.Task.WaitAsync(TimeSpan.FromSeconds(10)); // both clients closed their mappings when told, well before the deadline
        Assert.AreEqual(2, h.Node.SessionCount, "nobody was disconnected for it");
        Assert.AreEqual(0L, pool.GetStatistics().ReservedBytes);
        Assert.AreEqual(0, producer.SlabsMapped, "the producer unmapped the slab it said it closed");
        Assert.AreEqual(0, consumer.SlabsMapped, "and so did the consumer");
    }

    [TestMethod]
    public async Task A_publish_the_node_refuses_is_reported_and_drops_the_allocation()
    {
        await using var h = await NodeHarness.StartAsync();
        var producer = await h.ConnectAsync(inProcess: false);
        var pool = h.Node.PoolOf(0);
        int reported = 0;
        var allReported = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        producer.OneWayFailed += (_, e) =>
        {
            if (Interlocked.Add(ref reported, e.Error.Error == TubeError.BadRequest ? 1 : 100) == 5)
            {
                allReported.TrySetResult();
            }
        };
        for (int i = 0; i < 5; i++)
        {
            await using var output = await producer.AllocateAsync(1 << 20);
            using var stream = output.Device.CreateStream();
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await producer.PublishAsync(output, stream, new PutOptions { Consumers = 0 }));
            await producer.PublishAsync(output, stream, new PutOptions { Ttl = TimeSpan.FromDays(365) }); // past MaxTtl: refused on the node, one way
            var refused = await Assert.ThrowsAsync<TubeException>(async () => await producer.FlushAsync());
            Assert.AreEqual(TubeError.BadRequest, refused.Error);
        } // the node dropped each allocation it refused to publish; the buffers' dispose has nothing left to release

        await allReported.Task.WaitAsync(ChildProcess.Timeout);
        Assert.AreEqual(5, Volatile.Read(ref reported), "each refusal raised OneWayFailed once");
        await producer.FlushAsync();
        Assert.AreEqual(0L, pool.GetStatistics().InUseBytes, "nothing held until the connection closes");
        Assert.AreEqual(0, pool.GetStatistics().Blocks);
    }

    [TestMethod]
    public async Task An_in_process_consumers_code_after_its_get_runs_on_the_pool_not_on_the_publishers_ring_thread()
    {
        await using var h = await NodeHarness.StartAsync();
        var producer = await h.ConnectAsync(inProcess: false);
        Assert.IsTrue(producer.UsesControlRing);
        var consumer = await h.ConnectAsync(inProcess: true);
        var output = await producer.AllocateAsync(4096);
        var get = consumer.GetAsync(output.Id); // in process: parked on the node before this returns
        Assert.IsFalse(get.IsCompleted);
        var consumed = ThreadOfConsumerAsync(get);
        using (var stream = output.Device.CreateStream())
        {
            await producer.PublishAsync(output, stream, new PutOptions { Consumers = 2 }); // read and applied on the producer's ring thread
        }

        string? thread = await consumed.WaitAsync(ChildProcess.Timeout);
        TestContext.WriteLine($"the consumer went on on '{thread}'");
        Assert.IsFalse(thread?.StartsWith("faastube-session", StringComparison.Ordinal) ?? false, "never on a session's ring thread: the consumer's code cannot hold up the producer's ring");
        Assert.AreEqual(0, await producer.WhereAsync(output.Id));

        static async Task<string?> ThreadOfConsumerAsync(Task<TubeBuffer> get)
        {
            await using var got = await get;
            return Thread.CurrentThread.Name;
        }
    }

    [TestMethod]
    public async Task A_put_is_committed_and_an_allocation_published_never_the_other_way_and_refusals_free_their_count()
    {
        await using var h = await NodeHarness.StartAsync(configure: o => o.MaxHeldPerSession = 4);
        await using var client = await h.ConnectAsync(inProcess: false);
        for (int i = 0; i < 4; i++)
        {
            var put = new PayloadReader(await client.CallRawAsync(FrameType.PutBegin, new PayloadWriter().I64(100).I32(0))).Id();
            var refused = await Assert.ThrowsAsync<TubeException>(async () => await client.CallRawAsync(FrameType.Publish, new PayloadWriter().Id(put).I32(1).I64(0).U8(0)));
            Assert.AreEqual(TubeError.BadRequest, refused.Error);
            StringAssert.Contains(refused.Message, "PutCommit");
            await client.CallRawAsync(FrameType.Release, new PayloadWriter().Id(put)); // the Put is dropped and counted out
        }

        await using (var allocation = await client.AllocateAsync(100)) // not refused: nothing is held
        {
            var refused = await Assert.ThrowsAsync<TubeException>(async () => await client.CallRawAsync(FrameType.PutCommit, new PayloadWriter().Id(allocation.Id).I32(1).I64(0).U8(0)));
            Assert.AreEqual(TubeError.BadRequest, refused.Error);
        }

        await client.FlushAsync();
        Assert.AreEqual(0L, h.Node.PoolOf(0).GetStatistics().InUseBytes);
    }

    /// <summary>A connection whose first frame is a Hello with <paramref name="descriptor"/> attached (or none); the node's error.</summary>
    private static async Task<TubeException> HelloAsync(string path, PayloadWriter payload, SafeHandle? descriptor)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
        var frame = Frames.Encode(FrameType.Hello, 1, payload.Memory.Span);
        if (descriptor is null)
        {
            await socket.SendAsync(frame);
        }
        else
        {
            UnixRights.Send(socket, frame, descriptor);
        }

        using var stream = new NetworkStream(socket);
        var reader = System.IO.Pipelines.PipeReader.Create(stream);
        using var timeout = new CancellationTokenSource(ChildProcess.Timeout);
        var reply = await Frames.ReadAsync(reader, 1 << 16, timeout.Token);
        Assert.IsNotNull(reply, "the node closed without saying why");
        Assert.AreEqual(FrameType.Error, reply.Value.Type);
        var r = new PayloadReader(reply.Value.Payload);
        var error = new TubeException((TubeError)r.U16(), r.Str());
        Assert.IsNull(await Frames.ReadAsync(reader, 1 << 16, timeout.Token), "and then it closed the connection");
        return error;
    }

    private static SafeFileHandle Memfd(int bytes, bool seal)
    {
        int fd = Interop.Libc.memfd_create("test-window", Interop.Libc.MFD_CLOEXEC | Interop.Libc.MFD_ALLOW_SEALING);
        Assert.IsTrue(fd >= 0);
        Assert.AreEqual(0, Interop.Libc.ftruncate(fd, bytes));
        if (seal)
        {
            Assert.AreEqual(0, Interop.Libc.fcntl(fd, Interop.Libc.F_ADD_SEALS, SealedSharedMemory.RequiredSeals));
        }

        return new SafeFileHandle(fd, ownsHandle: true);
    }
}
