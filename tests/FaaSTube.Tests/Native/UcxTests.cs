using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using FaaSTube.Native;
using FaaSTube.Native.Handles;
using FaaSTube.Native.Ucx;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Native;

/// <summary>
/// The UCX bindings proved on one machine: two workers of one context (each with its progress
/// thread) talking over TCP loopback through a listener. Skipped (inconclusive) where libucp is
/// not installed; .ci/run installs libucx0.
/// </summary>
[TestClass]
public sealed class UcxTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void A_missing_library_says_what_to_install()
    {
        string? reason = UcxLibrary.Probe(["libucp-faastube-missing.so.0"], ["libucs-faastube-missing.so.0"]);

        Assert.IsNotNull(reason);
        StringAssert.Contains(reason, "libucp-faastube-missing.so.0");
        StringAssert.Contains(reason, "install libucx0 (Debian/Ubuntu");
        var error = new PlatformNotSupportedException(UcxLibrary.UnavailableMessage(reason));
        StringAssert.StartsWith(error.Message, "UCX is not available: ");
        if (!UcxLibrary.IsAvailable)
        {
            var thrown = Assert.ThrowsExactly<PlatformNotSupportedException>(() => UcxContext.Create());
            StringAssert.Contains(thrown.Message, "install libucx0");
        }
    }

    [TestMethod]
    public void A_failed_status_throws_one_exception_with_the_ucs_name_and_description()
    {
        var error = Assert.ThrowsExactly<UcxException>(() => UcxException.ThrowIfFailed(UcsStatus.ErrConnectionReset));

        Assert.AreEqual(UcsStatus.ErrConnectionReset, error.Status);
        Assert.AreEqual("UCS_ERR_CONNECTION_RESET", error.StatusName);
        Assert.AreEqual("UcsStatus.ErrConnectionReset", error.Call);
        StringAssert.Contains(error.Message, "UCS_ERR_CONNECTION_RESET (-25)");
        Assert.AreEqual("UCS_ERR_IO_ERROR", UcxException.NameOf(UcsStatus.ErrIoError));
        Assert.AreEqual("UCS_INPROGRESS", UcxException.NameOf(UcsStatus.InProgress));
        Assert.AreEqual("UCS_ERR_ENDPOINT_FAILURE_-61", UcxException.NameOf((UcsStatus)(-61)));
        UcxException.ThrowIfFailed(UcsStatus.Ok);
        UcxException.ThrowIfFailed(UcsStatus.InProgress);
        if (UcxLibrary.IsAvailable)
        {
            // ucs_status_string's text, not the fallback.
            Assert.IsFalse(error.Message.Contains("not loaded", StringComparison.Ordinal), error.Message);
        }
    }

    [TestMethod]
    public async Task Random_buffers_of_1_byte_to_16_MiB_round_trip_over_tcp_loopback()
    {
        await using var pair = await UcxPair.OpenAsync(TestContext);
        var random = Seeds.Create(TestContext);
        int[] sizes = [1, 2, 7, 255, 4096, 8193, 65_537, 1 << 20, (1 << 20) * 3 + 5, 16 << 20];
        ulong tag = 0x1000;
        foreach (int size in sizes)
        {
            byte[] sent = random.Bytes(size);
            var there = new byte[size];
            var back = new byte[size];
            var received = pair.ServerSide.ReceiveAsync(there, tag);
            await pair.ClientSide.SendAsync(sent, tag).WaitAsync(Bound);
            var message = await received.WaitAsync(Bound);
            Assert.AreEqual(size, message.Length);
            Assert.AreEqual(tag, message.Tag);

            var echoed = pair.ClientSide.ReceiveAsync(back, tag + 1);
            await pair.ServerSide.SendAsync(there, tag + 1).WaitAsync(Bound);
            Assert.AreEqual(size, (await echoed.WaitAsync(Bound)).Length);

            string expected = Checksum(sent);
            Assert.AreEqual(expected, Checksum(there), $"{size} bytes, client to server");
            Assert.AreEqual(expected, Checksum(back), $"{size} bytes, back");
            TestContext.WriteLine($"{size} bytes: {expected}");
            tag += 2;
        }
    }

    [TestMethod]
    public async Task Many_messages_in_flight_each_arrive_whole_under_its_tag()
    {
        await using var pair = await UcxPair.OpenAsync(TestContext);
        var random = Seeds.Create(TestContext);
        const int Count = 200;
        var messages = Enumerable.Range(0, Count).Select(_ => random.Bytes(random.Next(1, 256 << 10))).ToArray();
        var buffers = messages.Select(m => new byte[m.Length]).ToArray();

        // Half the receives are posted before the sends (expected), half after (unexpected messages).
        var receives = new Task<UcxMessage>[Count];
        for (int i = 0; i < Count; i += 2)
        {
            receives[i] = pair.ServerSide.ReceiveAsync(buffers[i], (ulong)(0x2000 + i));
        }

        var sends = messages.Select((m, i) => pair.ClientSide.SendAsync(m, (ulong)(0x2000 + i))).ToArray();
        for (int i = 1; i < Count; i += 2)
        {
            receives[i] = pair.ServerSide.ReceiveAsync(buffers[i], (ulong)(0x2000 + i));
        }

        await Task.WhenAll(sends).WaitAsync(Bound);
        await Task.WhenAll(receives).WaitAsync(Bound);
        for (int i = 0; i < Count; i++)
        {
            Assert.AreEqual(messages[i].Length, receives[i].Result.Length, $"message {i}");
            Assert.AreEqual(Checksum(messages[i]), Checksum(buffers[i]), $"message {i}");
        }
    }

    [TestMethod]
    public async Task A_send_from_registered_staging_arrives()
    {
        await using var pair = await UcxPair.OpenAsync(TestContext);
        var random = Seeds.Create(TestContext);
        const int Size = 4 << 20;
        using var staging = new NativeStaging(Size);
        random.NextBytes(staging.Span);
        SafeUcpMemoryHandle registered;
        unsafe
        {
            registered = pair.Context.Register((void*)staging.Address, Size);
        }

        using (registered)
        {
            var there = new byte[Size];
            var received = pair.ServerSide.ReceiveAsync(there, 0x3000);
            await pair.ClientSide.SendAsync(staging.Memory, 0x3000, registered).WaitAsync(Bound);
            await received.WaitAsync(Bound);
            Assert.AreEqual(Checksum(staging.Span), Checksum(there));
        }
    }

    [TestMethod]
    public async Task A_message_longer_than_the_buffer_fails_the_receive_as_truncated()
    {
        await using var pair = await UcxPair.OpenAsync(TestContext);
        var received = pair.ServerSide.ReceiveAsync(new byte[10], 0x4000);
        await pair.ClientSide.SendAsync(new byte[100], 0x4000).WaitAsync(Bound);

        var error = await Assert.ThrowsExactlyAsync<UcxException>(() => received.WaitAsync(Bound));
        Assert.AreEqual(UcsStatus.ErrMessageTruncated, error.Status);
    }

    [TestMethod]
    public async Task A_peer_whose_worker_goes_away_fails_pending_receives_and_sends()
    {
        await using var pair = await UcxPair.OpenAsync(TestContext);
        var waiting = pair.ServerSide.ReceiveAsync(new byte[64], 0x5000);
        var clientWaiting = pair.ClientSide.ReceiveAsync(new byte[64], 0x5001);

        pair.Client.Dispose();

        // The client's own receive fails at once; the server learns through UCX's error handler.
        await Assert.ThrowsAsync<Exception>(() => clientWaiting.WaitAsync(Bound));
        var failure = await pair.ServerSide.Failed.WaitAsync(Bound);
        TestContext.WriteLine($"server endpoint failed: {failure.Message}");
        var error = await Assert.ThrowsAsync<Exception>(() => waiting.WaitAsync(Bound));
        Assert.AreSame(failure, error);
        await Assert.ThrowsAsync<Exception>(() => pair.ServerSide.SendAsync(new byte[8], 0x5002).WaitAsync(Bound));
    }

    [TestMethod]
    public async Task Closing_an_endpoint_fails_its_receives_and_the_peer_sees_it()
    {
        await using var pair = await UcxPair.OpenAsync(TestContext);
        var mine = pair.ClientSide.ReceiveAsync(new byte[64], 0x6000);
        var theirs = pair.ServerSide.ReceiveAsync(new byte[64], 0x6001);

        await pair.ClientSide.CloseAsync(force: true).WaitAsync(Bound);

        await Assert.ThrowsExactlyAsync<ObjectDisposedException>(() => mine.WaitAsync(Bound));
        await Assert.ThrowsAsync<Exception>(() => theirs.WaitAsync(Bound));
        Assert.IsNotNull(await pair.ServerSide.Failed.WaitAsync(Bound));
        await Assert.ThrowsExactlyAsync<ObjectDisposedException>(() => pair.ClientSide.SendAsync(new byte[1], 0x6002).WaitAsync(Bound));
    }

    [TestMethod]
    public async Task A_cancelled_receive_completes_as_cancelled_and_disposal_fails_the_rest()
    {
        await using var pair = await UcxPair.OpenAsync(TestContext);
        using var cancel = new CancellationTokenSource();
        var cancelled = pair.Server.ReceiveAsync(new byte[8], 0x7000, cancellationToken: cancel.Token);
        var orphan = pair.Server.ReceiveAsync(new byte[8], 0x7001);

        await cancel.CancelAsync();
        await Assert.ThrowsAsync<OperationCanceledException>(() => cancelled.WaitAsync(Bound));

        pair.Server.Dispose();
        await Assert.ThrowsExactlyAsync<ObjectDisposedException>(() => orphan.WaitAsync(Bound));
        await Assert.ThrowsExactlyAsync<ObjectDisposedException>(() => pair.Server.ReceiveAsync(new byte[8], 0x7002).WaitAsync(Bound));
    }

    [TestMethod]
    public async Task Commands_posted_while_the_worker_is_disposed_run_on_its_thread_or_fail_none_hangs()
    {
        // Callers on the thread pool post commands and sends as the worker is disposed: each runs on
        // the progress thread or fails as disposed, and the worker is destroyed there (the wake-up
        // gate, UcxWorker.Post), so disposal waits for nobody and nothing is left waiting.
        var random = Seeds.Create(TestContext);
        for (int round = 0; round < 10; round++)
        {
            await using var pair = await UcxPair.OpenAsync(TestContext);
            int progressThread = await pair.Client.InvokeAsync(Interop.Libc.gettid).WaitAsync(Bound);
            int disposeAfter = random.Next(0, 200);
            var posted = new System.Collections.Concurrent.ConcurrentBag<Task>();
            var startPosting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var posters = Enumerable.Range(0, 4).Select(poster => Task.Run(async () =>
            {
                await startPosting.Task;
                for (int i = 0; i < 100; i++)
                {
                    posted.Add(pair.Client.InvokeAsync(Interop.Libc.gettid).ContinueWith(t =>
                    {
                        if (t.IsCompletedSuccessfully)
                        {
                            Assert.AreEqual(progressThread, t.Result, "a command ran off the progress thread");
                        }
                        else
                        {
                            Assert.IsInstanceOfType<ObjectDisposedException>(t.Exception!.InnerException);
                        }
                    }, TaskScheduler.Default));
                    posted.Add(pair.ClientSide.SendAsync(new byte[16], 0x8000).ContinueWith(t => { _ = t.Exception; }, TaskScheduler.Default));
                }
            })).ToArray();

            startPosting.SetResult();
            await Task.Delay(TimeSpan.FromMilliseconds(disposeAfter / 50.0));
            await Task.Run(pair.Client.Dispose).WaitAsync(Bound);
            await Task.WhenAll(posters).WaitAsync(Bound);
            await Task.WhenAll(posted).WaitAsync(Bound);
            await pair.Client.Stopped.WaitAsync(Bound);
            Assert.AreEqual(800, posted.Count);
            await Assert.ThrowsExactlyAsync<ObjectDisposedException>(() => pair.Client.InvokeAsync(Interop.Libc.gettid).WaitAsync(Bound));
        }
    }

    [TestMethod]
    public async Task An_idle_progress_thread_sleeps_on_the_event_descriptor()
    {
        await using var pair = await UcxPair.OpenAsync(TestContext);
        int tid = await pair.Server.InvokeAsync(Interop.Libc.gettid).WaitAsync(Bound);
        await AssertIdleAsync(tid, "an idle progress thread must not spin");
    }

    /// <summary>Thread <paramref name="tid"/> uses at most 5 clock ticks of CPU in a second with nothing to do (a spinning thread takes about 100).</summary>
    private async Task AssertIdleAsync(int tid, string why)
    {
        long before = CpuTicks(tid);
        await Task.Delay(TimeSpan.FromSeconds(1)); // the measurement's length, not a wait for something to happen
        long after = CpuTicks(tid);
        TestContext.WriteLine($"progress thread {tid}: {after - before} clock ticks of CPU in 1 s idle");
        Assert.IsLessThanOrEqualTo(5L, after - before, why);
    }

    [TestMethod]
    public async Task A_progress_thread_that_polls_before_it_sleeps_still_sleeps_when_idle()
    {
        await using var pair = await UcxPair.OpenAsync(TestContext);
        pair.Server.SpinTime = TimeSpan.FromMilliseconds(1); // the most it may poll after an event
        pair.Client.SpinTime = TimeSpan.FromMilliseconds(1);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => pair.Server.SpinTime = TimeSpan.FromMilliseconds(2), "the poll is bounded");
        int tid = await pair.Server.InvokeAsync(Interop.Libc.gettid).WaitAsync(Bound);

        // Traffic first (each message restarts the poll), then idle: the thread must go to sleep.
        var buffer = new byte[64];
        for (int i = 0; i < 50; i++)
        {
            var received = pair.ServerSide.ReceiveAsync(buffer, tag: (ulong)i);
            await pair.ClientSide.SendAsync(new byte[64], tag: (ulong)i).WaitAsync(Bound);
            Assert.AreEqual(64L, (await received.WaitAsync(Bound)).Length);
        }

        await AssertIdleAsync(tid, "an idle progress thread must not spin, whatever its SpinTime (1 ms here)");
    }

    [TestMethod]
    public async Task A_command_posted_from_the_progress_thread_runs_without_a_wake_up()
    {
        await using var pair = await UcxPair.OpenAsync(TestContext);
        pair.Server.SpinTime = TimeSpan.Zero; // straight to sleep: a command posted without a signal must still run
        var ran = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        int poster = await pair.Server.InvokeAsync(() =>
        {
            Assert.IsTrue(pair.Server.IsProgressThread);
            pair.Server.Post(() => ran.TrySetResult(Interop.Libc.gettid()), e => ran.TrySetException(e));
            return Interop.Libc.gettid();
        }).WaitAsync(Bound);

        Assert.AreEqual(poster, await ran.Task.WaitAsync(Bound), "the command runs on the progress thread, after the one that posted it");
        Assert.IsFalse(pair.Server.IsProgressThread);
    }

    private static long CpuTicks(int tid)
    {
        // /proc/self/task/TID/stat: utime and stime are fields 14 and 15, after the ")" of the name.
        string stat = File.ReadAllText($"/proc/self/task/{tid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
    }

    private static string Checksum(ReadOnlySpan<byte> data) => Convert.ToHexString(SHA256.HashData(data));

    /// <summary>Two workers of one context, a listener on 127.0.0.1 (free port), a client endpoint and the accepted one.</summary>
    private sealed class UcxPair : IAsyncDisposable
    {
        private UcxPair(UcxContext context, UcxWorker server, UcxWorker client)
        {
            Context = context;
            Server = server;
            Client = client;
        }

        public UcxContext Context { get; }
        public UcxWorker Server { get; }
        public UcxWorker Client { get; }
        public UcxListener Listener { get; private set; } = null!;
        public UcxEndpoint ClientSide { get; private set; } = null!;
        public UcxEndpoint ServerSide { get; private set; } = null!;

        public static async Task<UcxPair> OpenAsync(TestContext test)
        {
            if (!UcxLibrary.TryLoad(out string? reason))
            {
                Assert.Inconclusive($"UCX (libucp) is not installed here, so the transport cannot be exercised: {reason}");
            }

            var context = UcxContext.Create(UcxContext.LoopbackTcp);
            var pair = new UcxPair(context, UcxWorker.Create(context, "ucx-test-server"), UcxWorker.Create(context, "ucx-test-client"));
            try
            {
                pair.Listener = await UcxListener.ListenAsync(pair.Server, new IPEndPoint(IPAddress.Loopback, 0)).WaitAsync(Bound);
                pair.ClientSide = await UcxEndpoint.ConnectAsync(pair.Client, pair.Listener.LocalEndPoint).WaitAsync(Bound);
                pair.ServerSide = await (await pair.Listener.AcceptAsync().AsTask().WaitAsync(Bound)).AcceptAsync(pair.Server).WaitAsync(Bound);
                test.WriteLine($"UCX {UcxLibrary.Version}: listening on {pair.Listener.LocalEndPoint}, client {pair.ServerSide.Peer}");
                return pair;
            }
            catch
            {
                await pair.DisposeAsync();
                throw;
            }
        }

        public ValueTask DisposeAsync()
        {
            Client.Dispose();
            Server.Dispose();
            Context.Dispose();
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>Native memory for a registered staging buffer.</summary>
    private sealed unsafe class NativeStaging(int size) : IDisposable
    {
        public nint Address { get; } = (nint)NativeMemory.AlignedAlloc((nuint)size, 4096);
        public Span<byte> Span => new((void*)Address, size);
        public ReadOnlyMemory<byte> Memory => new UnmanagedMemory(Address, size).Memory;

        public void Dispose() => NativeMemory.AlignedFree((void*)Address);
    }

    private sealed unsafe class UnmanagedMemory(nint address, int length) : System.Buffers.MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => new((void*)address, length);
        public override System.Buffers.MemoryHandle Pin(int elementIndex = 0) => new((byte*)address + elementIndex);
        public override void Unpin() { }
        protected override void Dispose(bool disposing) { }
    }
}
