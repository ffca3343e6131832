using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using FaaSTube.Channels;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Devices;
using FaaSTube.Kernels;
using FaaSTube.Memory;
using FaaSTube.Native;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// Issue 15 acceptance: hostile clients against an in-process node (over its real Unix socket), a
/// healthy client alongside. Seeded: the seed is logged; FAASTUBE_TEST_SEED replays the same frame
/// choices (FAASTUBE_FUZZ_FRAMES changes how many frames).
/// </summary>
[TestClass]
public sealed partial class HostileFuzzTests
{
    private const int DefaultFrames = 12_000;
    private const int HostileClients = 6;
    private const int WindowBytes = 1 << 20;

    public TestContext TestContext { get; set; } = null!;

    /// <summary>What the answer to a generated frame must be.</summary>
    private enum Expect
    {
        /// <summary>Ok or an error (well formed, no stack trace).</summary>
        Any,

        /// <summary>An error: the frame cannot be valid (truncated, unknown or node-only type).</summary>
        Error,

        /// <summary>NotFound: a well-formed request on another workflow's id.</summary>
        NotFound,

        /// <summary>NotLeased: a well-formed GetToHost/Release of another workflow's id (the same answer as for any id not held: no existence oracle).</summary>
        NotLeased,

        /// <summary>FrameTooLarge, then the node closes the connection.</summary>
        FrameTooLarge,
    }

    private sealed record Generated(FrameType Type, string Category, byte[] Payload, Expect Expect);

    [TestMethod]
    public async Task Hostile_frames_of_every_type_never_hurt_the_node_another_workflow_or_a_healthy_client()
    {
        var random = Seeds.Create(TestContext);
        int seed = random.Next();
        int frames = Environment.GetEnvironmentVariable("FAASTUBE_FUZZ_FRAMES") is { } n ? int.Parse(n, CultureInfo.InvariantCulture) : DefaultFrames;
        var logs = new CollectingLoggerFactory();
        await using var h = await NodeHarness.StartAsync(loggerFactory: logs, configure: o =>
        {
            o.Pool.AllocationTimeout = TimeSpan.FromMilliseconds(100); // the fuzz's pace: a size the pool cannot place fails after 0.1 s, not 10 (sizes beyond the device must fail at once: the next test)
            o.MaxPublishWait = TimeSpan.FromMilliseconds(100); // a Get of the client's own unpublished allocation waits 0.1 s, not 60
        });
        var pool = h.Node.PoolOf(0);

        // Another workflow's data: committed (a Put and a Publish) and an allocation not yet published.
        await using var victim = await ConnectAsync(h, "victim", "victim");
        var victimData = random.Bytes((1 << 20) + 17);
        var victimPut = await victim.PutAsync(victimData, new PutOptions { Consumers = 1000 });
        var victimAllocation = await victim.AllocateAsync(300_000);
        ulong victimPattern = (ulong)random.NextInt64();
        var victimPublished = await victim.AllocateAsync(200_000);
        using (var stream = victimPublished.Device.CreateStream())
        {
            await stream.FillPatternAsync(victimPublished.Memory, victimPattern);
            await victim.PublishAsync(victimPublished, stream, new PutOptions { Consumers = 1000 });
        }

        await victim.PutNamedAsync(VictimName, victimData.AsMemory(0, 50_000)); // a name in the victim's scope: hostiles get NotFound for it

        TubeId[] victimIds = [victimPut, victimPublished.Id, victimAllocation.Id];
        long baseline = pool.GetStatistics().InUseBytes;
        TestContext.WriteLine($"baseline in use {baseline} bytes (the victim's data)");

        var violations = new ConcurrentQueue<string>();
        var outcomes = new ConcurrentDictionary<string, int>();
        var sentByType = new ConcurrentDictionary<string, int>();
        var hostileIds = new ConcurrentBag<TubeId>();
        using var stormDone = new CancellationTokenSource();
        var clock = Stopwatch.StartNew();

        var healthy = HealthyLoopAsync(h, new Random(seed ^ 0x5eed), violations, stormDone.Token);
        var hostiles = Enumerable.Range(0, HostileClients).Select(i => HostileAsync(h, new Random(seed + i), i, frames / HostileClients + (i < frames % HostileClients ? 1 : 0), victimIds, hostileIds, violations, outcomes, sentByType)).ToArray();
        await Task.WhenAll(hostiles);
        var stormTime = clock.Elapsed;
        await stormDone.CancelAsync();
        int rounds = await healthy;

        // The hostile clients are gone; what they committed stays by contract: their workflow deletes it.
        await using (var cleaner = await ConnectAsync(h, "hostile", "cleaner"))
        {
            foreach (var id in hostileIds.Distinct())
            {
                try
                {
                    await cleaner.DeleteAsync(id);
                }
                catch (TubeException e) when (e.Error == TubeError.NotFound)
                {
                    // Never committed (dropped with its session) or already freed.
                }
            }

            foreach (var name in HostileNames)
            {
                try
                {
                    await cleaner.DeleteNamedAsync(name);
                }
                catch (Exception e) when (e is TubeException { Error: TubeError.NotFound or TubeError.BadRequest } or ArgumentException)
                {
                    // Never committed, or not a valid name.
                }
            }
        }

        await using (var got = await victim.GetNamedAsync(VictimName))
        {
            using var stream = got.Device.CreateStream();
            Assert.AreEqual(DataChecksum.Compute(victimData.AsSpan(0, 50_000)), await stream.ChecksumAsync(got.Memory), "the victim's named object is intact");
        }

        // The victim's data is intact and still its own.
        var back = new byte[victimData.Length];
        await victim.GetAsync(victimPut, back.AsMemory());
        Assert.AreEqual(DataChecksum.Compute(victimData), DataChecksum.Compute(back), "the victim's Put is intact");
        await using (var got = await victim.GetAsync(victimPublished.Id))
        {
            using var stream = got.Device.CreateStream();
            Assert.AreEqual(PoolHarness.Expected(200_000, victimPattern), await stream.ChecksumAsync(got.Memory), "the victim's published data is intact");
        }

        await victim.FlushAsync(); // its releases (one way) are applied

        int total = sentByType.Values.Sum();
        TestContext.WriteLine($"{total} hostile frames in {stormTime.TotalSeconds:0.0} s from {HostileClients} clients; healthy round trips {rounds}; seed {seed}");
        TestContext.WriteLine("sent by type: " + string.Join(", ", sentByType.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}")));
        foreach (var v in violations.Take(25))
        {
            TestContext.WriteLine("violation: " + v);
        }

        TestContext.WriteLine("outcomes: " + string.Join(", ", outcomes.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}")));

        Assert.IsEmpty(violations, $"{violations.Count} violations (seed {seed}):\n" + string.Join("\n", violations.Take(25)) + "\nnode log:\n" + string.Join("\n", logs.Entries.Take(10)));
        Assert.IsGreaterThanOrEqualTo(frames, total);
        foreach (var type in Enum.GetValues<FrameType>())
        {
            Assert.IsTrue(sentByType.ContainsKey(type.ToString()), $"no {type} frame was sent");
        }

        Assert.IsTrue(sentByType.ContainsKey("unknown"), "no unknown type was sent");
        Assert.IsGreaterThanOrEqualTo(20, rounds, "the healthy client kept working during the storm");
        Assert.AreEqual(0, outcomes.GetValueOrDefault("Internal"), "no request made the node fail internally:\n" + string.Join("\n", logs.Entries.Take(10)));
        Assert.AreEqual(baseline, pool.GetStatistics().InUseBytes, "every hostile client is gone and its data deleted: the pool is back at its baseline");
    }

    /// <summary>
    /// Issue 15 finding 10: a size beyond what the device could ever hold fails at once, before any
    /// state is touched (no rounding overflow, no negative in-use count, no growth, no eviction).
    /// </summary>
    [TestMethod]
    public async Task Sizes_beyond_what_the_device_could_hold_fail_at_once_and_touch_nothing()
    {
        await using var h = await NodeHarness.StartAsync(); // the pool's default AllocationTimeout: 10 s
        await using var client = await ConnectAsync(h, "hostile", "sizes");
        var pool = h.Node.PoolOf(0);
        await client.PutAsync(new byte[4096], new PutOptions { Consumers = 1 }); // a slab exists and holds something
        var before = pool.GetStatistics();
        long device = h.Node.Gpus.Devices[0].GetMemoryInfo().Total;
        var failures = new List<string>();
        foreach (long size in new[] { long.MaxValue, long.MaxValue - 100, (1L << 62) + 1, 1L << 40, device + 1 })
        {
            foreach (var type in new[] { FrameType.PutBegin, FrameType.Allocate })
            {
                var clock = Stopwatch.StartNew();
                string outcome;
                try
                {
                    await client.CallRawAsync(type, new PayloadWriter().I64(size).I32(0));
                    outcome = "Ok";
                }
                catch (TubeException e)
                {
                    outcome = e.Error.ToString();
                }

                var elapsed = clock.Elapsed;
                if (outcome is not (nameof(TubeError.TooLarge) or nameof(TubeError.BadRequest)) || elapsed > TimeSpan.FromSeconds(2))
                {
                    failures.Add($"{type} of {size} bytes: {outcome} after {elapsed.TotalSeconds:0.00} s (expected TooLarge or BadRequest at once)");
                }
            }
        }

        PoolStatistics after = default;
        string? statistics = null;
        try
        {
            after = pool.GetStatistics();
        }
        catch (OverflowException e)
        {
            statistics = $"GetStatistics throws {e.GetType().Name}: the pool's books are corrupt";
        }

        Assert.IsEmpty(failures, string.Join("\n", failures));
        Assert.IsNull(statistics, statistics);
        Assert.AreEqual(before.InUseBytes, after.InUseBytes, "nothing was allocated");
        Assert.AreEqual(before.ReservedBytes, after.ReservedBytes, "the pool did not grow");
        Assert.AreEqual(before.Evictions, after.Evictions, "nothing was evicted for it");
    }

    /// <summary>
    /// Hand-written handshakes over a raw socket: every wrong descriptor, version, size or byte
    /// stream gets a clear error (or, for bytes that are no frame at all, at least a closed
    /// connection); every descriptor the node was handed is closed again; the node keeps serving.
    /// A correct hand-written Hello is accepted, so the refusals are the node's, not the encoding's.
    /// </summary>
    [TestMethod]
    public async Task Hand_written_handshakes_with_wrong_descriptors_versions_and_bytes_are_refused_and_the_node_keeps_serving()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(configure: o => o.HelloTimeout = TimeSpan.FromSeconds(2));
        await using var healthy = await ConnectAsync(h, "healthy", "healthy");
        string tag = $"hostile-{Guid.NewGuid():N}"[..20];
        const long Size = 64 << 10;
        byte[] Hello(long windowBytes, ushort version = Frames.Version, string workflow = "wf") =>
            Frames.Encode(FrameType.Hello, 1, new PayloadWriter().U16(version).Str(workflow).Str("f").I64(windowBytes).I64(0).Memory.Span);

        string regular = Path.Combine(Path.GetTempPath(), tag + ".file");
        string shmRegular = Path.Combine("/dev/shm", tag + ".shm");
        string directory = Directory.CreateTempSubdirectory(tag).FullName;
        await File.WriteAllBytesAsync(regular, new byte[Size]);
        await File.WriteAllBytesAsync(shmRegular, new byte[Size]);
        int[] pipe = Pipe();
        using var looseSocket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var opened = new List<int>();
        int Keep(int fd)
        {
            Assert.IsGreaterThanOrEqualTo(0, fd, $"errno {Marshal.GetLastPInvokeError()}");
            opened.Add(fd);
            return fd;
        }

        var cases = new List<(string Name, byte[] Bytes, int[] Fds, TubeError? Expected)>
        {
            ("no descriptor", Hello(Size), [], TubeError.BadRequest),
            ("two sealed memfds", Hello(Size), [Keep(Memfd(tag, Size, SharedSeals)), Keep(Memfd(tag, Size, SharedSeals))], TubeError.BadRequest),
            ("a regular file", Hello(Size), [Keep(Open(regular, O_RDWR))], TubeError.BadRequest),
            ("a regular file in /dev/shm", Hello(Size), [Keep(Open(shmRegular, O_RDWR))], TubeError.BadRequest),
            ("a directory", Hello(Size), [Keep(Open(directory, O_RDONLY | O_DIRECTORY))], TubeError.BadRequest),
            ("a pipe", Hello(Size), [pipe[0]], TubeError.BadRequest),
            ("a socket", Hello(Size), [(int)looseSocket.Handle], TubeError.BadRequest),
            ("an unsealed memfd", Hello(Size), [Keep(Memfd(tag, Size, 0))], TubeError.BadRequest),
            ("a memfd sealed against shrinking only", Hello(Size), [Keep(Memfd(tag, Size, Interop.Libc.F_SEAL_SHRINK))], TubeError.BadRequest),
            ("a memfd of another size than claimed", Hello(2 * Size), [Keep(Memfd(tag, Size, SharedSeals))], TubeError.BadRequest),
            ("a claimed size of 0", Hello(0), [Keep(Memfd(tag, Size, SharedSeals))], TubeError.BadRequest),
            ("a claimed size of -1", Hello(-1), [Keep(Memfd(tag, Size, SharedSeals))], TubeError.BadRequest),
            ("a claimed size of 2^62", Hello(1L << 62), [Keep(Memfd(tag, Size, SharedSeals))], TubeError.BadRequest),
            ("version 1 (window by name)", Frames.Encode(FrameType.Hello, 1, new PayloadWriter().U16(1).Str("wf").Str("f").Str("faastube-win.1.x").I64(Size).Memory.Span), [Keep(Memfd(tag, Size, SharedSeals))], TubeError.VersionMismatch),
            ("version 2 (Publish and Release answered)", Hello(Size, version: 2), [Keep(Memfd(tag, Size, SharedSeals))], TubeError.VersionMismatch),
            ("the next version", Hello(Size, version: Frames.Version + 1), [Keep(Memfd(tag, Size, SharedSeals))], TubeError.VersionMismatch),
            ("a workflow of invalid UTF-8", Frames.Encode(FrameType.Hello, 1, new PayloadWriter().U16(Frames.Version).Bytes([0x77, 0xC3, 0x28]).Str("f").I64(Size).Memory.Span), [Keep(Memfd(tag, Size, SharedSeals))], TubeError.BadRequest),
            ("an empty workflow", Hello(Size, workflow: ""), [Keep(Memfd(tag, Size, SharedSeals))], TubeError.BadRequest),
            ("a first frame that is not Hello", Frames.Encode(FrameType.Get, 1, new byte[20]), [Keep(Memfd(tag, Size, SharedSeals))], TubeError.BadRequest),
            ("a truncated Hello", Frames.Encode(FrameType.Hello, 1, [(byte)Frames.Version, 0, 5]), [Keep(Memfd(tag, Size, SharedSeals))], TubeError.BadRequest),
            ("an oversized frame", [0x00, 0x00, 0x10, 0x00, 1, 1, 0, 0, 0], [Keep(Memfd(tag, Size, SharedSeals))], TubeError.FrameTooLarge),
            ("a frame of 4 bytes", [4, 0, 0, 0, 1, 1, 0, 0, 0], [], TubeError.FrameTooLarge),
        };
        for (int i = 0; i < 8; i++)
        {
            cases.Add(($"garbage {i}", random.Bytes(random.Next(1, 200)), [], null));
            var framed = random.Bytes(random.Next(9, 200)); // a plausible length, then garbage: type, id and payload
            BitConverter.TryWriteBytes(framed.AsSpan(0, 4), framed.Length - 4);
            cases.Add(($"framed garbage {i}", framed, i % 2 == 0 ? [Keep(Memfd(tag, Size, SharedSeals))] : [], null));
        }

        var failures = new List<string>();
        foreach (var (name, bytes, fds, expected) in cases)
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(h.Socket));
            SendWithRights(socket, bytes, fds);
            socket.Shutdown(SocketShutdown.Send); // nothing more comes: a frame cut short ends now, not at the Hello timeout
            var (answer, closed) = await ReadAnswerAsync(socket);
            if (answer is { } e && (string.IsNullOrWhiteSpace(e.Reason) || e.Reason.Contains("   at ", StringComparison.Ordinal)))
            {
                failures.Add($"{name}: a malformed error '{e.Reason}'");
            }

            if (expected is { } want ? answer?.Error != want : answer is null && !closed)
            {
                failures.Add($"{name}: {(answer is null ? "no answer" : $"{answer.Error} '{answer.Reason}'")}, expected {(expected?.ToString() ?? "an error or a close")}");
            }

            if (!closed)
            {
                failures.Add($"{name}: the connection stayed open after the refusal");
            }

            TestContext.WriteLine($"{name}: {(answer is null ? "-" : $"{answer.Error} '{answer.Reason}'")}{(closed ? ", closed" : "")}");
        }

        // Our copies go; then no descriptor in this process (the node's included) may still refer to them.
        opened.ForEach(fd => Interop.Libc.close(fd));
        Interop.Libc.close(pipe[0]);
        var leaked = Directory.GetFiles("/proc/self/fd").Select(f => { try { return File.ResolveLinkTarget(f, false)?.FullName ?? ""; } catch (IOException) { return ""; } })
            .Where(t => t.Contains(tag, StringComparison.Ordinal)).ToList();
        bool pipeReaderGone = WriteOne(pipe[1]) < 0 && Marshal.GetLastPInvokeError() == EPIPE; // every read end (the node's copy too) is closed

        Interop.Libc.close(pipe[1]);
        File.Delete(regular);
        File.Delete(shmRegular);
        Directory.Delete(directory);

        Assert.IsEmpty(failures, string.Join("\n", failures));
        Assert.IsEmpty(leaked, "descriptors the node refused are closed: " + string.Join(", ", leaked));
        Assert.IsTrue(pipeReaderGone, "the node closed the pipe it was handed");
        Assert.AreEqual(1, h.Node.SessionCount, "every refused connection ended; the healthy client is served");

        // A hand-written Hello done right is accepted (the refusals above are about what was wrong).
        using (var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(h.Socket));
            int fd = Memfd(tag, Size, SharedSeals);
            SendWithRights(socket, Hello(Size), [fd]);
            Interop.Libc.close(fd);
            var reply = await ReadFrameAsync(socket);
            Assert.AreEqual((byte)FrameType.Ok, reply?[4], "a correct hand-written Hello is accepted");
        }

        var data = random.Bytes(700_000);
        var id = await healthy.PutAsync(data, new PutOptions { Consumers = 1 });
        var back = new byte[data.Length];
        await healthy.GetAsync(id, back.AsMemory());
        Assert.AreEqual(DataChecksum.Compute(data), DataChecksum.Compute(back), "the node still serves a healthy client");
    }

    private const int SharedSeals = Interop.Libc.F_SEAL_SHRINK | Interop.Libc.F_SEAL_GROW;
    private const int O_RDONLY = 0;
    private const int O_RDWR = 2;
    private const int O_DIRECTORY = 0x10000;
    private const int EPIPE = 32;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    private static unsafe partial int Pipe2(int* fds, int flags);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static unsafe partial nint Write(int fd, byte* bytes, nuint count);

    private static unsafe nint WriteOne(int fd)
    {
        byte one = 1;
        return Write(fd, &one, 1);
    }

    private static unsafe int[] Pipe()
    {
        int* fds = stackalloc int[2];
        Assert.AreEqual(0, Pipe2(fds, 0x80000 /* O_CLOEXEC */), $"pipe2: errno {Marshal.GetLastPInvokeError()}");
        return [fds[0], fds[1]];
    }

    /// <summary>A memfd named after <paramref name="tag"/> of <paramref name="size"/> bytes with <paramref name="seals"/> added.</summary>
    private static int Memfd(string tag, long size, int seals)
    {
        int fd = Interop.Libc.memfd_create(tag, Interop.Libc.MFD_CLOEXEC | Interop.Libc.MFD_ALLOW_SEALING);
        Assert.IsGreaterThanOrEqualTo(0, fd);
        Assert.AreEqual(0, Interop.Libc.ftruncate(fd, size));
        if (seals != 0)
        {
            Assert.AreEqual(0, Interop.Libc.fcntl(fd, Interop.Libc.F_ADD_SEALS, seals));
        }

        return fd;
    }

    /// <summary>Sends <paramref name="bytes"/> with <paramref name="fds"/> attached (SCM_RIGHTS), in one sendmsg.</summary>
    private static unsafe void SendWithRights(Socket socket, byte[] bytes, int[] fds)
    {
        int space = fds.Length == 0 ? 0 : Interop.Libc.ControlSpace(fds.Length * sizeof(int));
        byte* control = stackalloc byte[Math.Max(space, 1)];
        new Span<byte>(control, Math.Max(space, 1)).Clear();
        if (fds.Length > 0)
        {
            var header = (Interop.Libc.ControlHeader*)control;
            header->Length = (nuint)Interop.Libc.ControlLength(fds.Length * sizeof(int));
            header->Level = Interop.Libc.SOL_SOCKET;
            header->Type = Interop.Libc.SCM_RIGHTS;
            for (int i = 0; i < fds.Length; i++)
            {
                ((int*)(control + 16))[i] = fds[i];
            }
        }

        fixed (byte* data = bytes)
        {
            var vector = new Interop.Libc.IoVector { Base = data, Length = (nuint)bytes.Length };
            var message = new Interop.Libc.MessageHeader { Vectors = &vector, VectorCount = 1, Control = fds.Length > 0 ? control : null, ControlLength = (nuint)space };
            nint sent = Interop.Libc.sendmsg(socket.Handle, &message, Interop.Libc.MSG_NOSIGNAL);
            Assert.AreEqual((nint)bytes.Length, sent, $"sendmsg: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    /// <summary>The error the node answered (null if none) and whether it then closed the connection (bounded wait).</summary>
    private static async Task<(TubeException? Answer, bool Closed)> ReadAnswerAsync(Socket socket)
    {
        var frame = await ReadFrameAsync(socket);
        TubeException? answer = null;
        if (frame is not null && frame[4] == (byte)FrameType.Error)
        {
            var r = new PayloadReader(frame.AsSpan(9));
            answer = new TubeException((TubeError)r.U16(), r.Str());
        }

        bool closed = frame is null || await ReadFrameAsync(socket) is null;
        return (answer, closed);
    }

    /// <summary>One whole frame (header included), or null when the connection ends first. Bounded by <see cref="ChildProcess.Timeout"/>.</summary>
    private static async Task<byte[]?> ReadFrameAsync(Socket socket)
    {
        using var timeout = new CancellationTokenSource(ChildProcess.Timeout);
        var header = new byte[4];
        if (!await FillAsync(socket, header, timeout.Token))
        {
            return null;
        }

        var frame = new byte[4 + BitConverter.ToInt32(header)];
        header.CopyTo(frame, 0);
        return await FillAsync(socket, frame.AsMemory(4), timeout.Token) ? frame : null;
    }

    private static async Task<bool> FillAsync(Socket socket, Memory<byte> into, CancellationToken cancellationToken)
    {
        for (int n = 0; n < into.Length;)
        {
            int got;
            try
            {
                got = await socket.ReceiveAsync(into[n..], cancellationToken);
            }
            catch (SocketException)
            {
                return false; // reset by the node: closed
            }

            if (got == 0)
            {
                return false;
            }

            n += got;
        }

        return true;
    }

    /// <summary>
    /// A client that closes its connection while its own Put is in flight (PutBegin, parts or commit
    /// on the wire) leaves nothing behind once the node has cleaned up its session: the node-soak
    /// scenario saw 4 MiB blocks stay in the pool after such clients had gone (those turned out to be
    /// Puts that committed as their client left; committed data is swept here before judging).
    /// </summary>
    [TestMethod]
    public async Task Clients_that_leave_in_the_middle_of_their_Put_leave_nothing_in_the_pool()
    {
        await using var h = await NodeHarness.StartAsync();
        var pool = h.Node.PoolOf(0);
        var leftovers = new List<string>();
        for (int i = 0; i < 200; i++)
        {
            var client = await ConnectAsync(h, "leaver", "leaver");
            var ended = h.SessionEnded(client.SessionId);
            var put = client.PutAsync(new byte[4 << 20], new PutOptions { Consumers = 1 });
            await client.DisposeAsync();
            await ended.WaitAsync(ChildProcess.Timeout);
            string outcome = await put.ContinueWith(t => t.IsCompletedSuccessfully ? $"Put answered {t.Result}" : t.Exception!.InnerException!.GetType().Name, TaskScheduler.Default);
            long inUse = pool.GetStatistics().InUseBytes;
            if (inUse != 0)
            {
                // The Put may have committed just before the client left: such data outlives its producer by contract, until its TTL.
                h.Clock.Advance(h.Node.Options.DefaultTtl + TimeSpan.FromSeconds(1));
                h.Node.SweepExpired();
                inUse = pool.GetStatistics().InUseBytes;
            }

            if (inUse != 0)
            {
                leftovers.Add($"round {i}: {inUse} bytes in use after the session's clean-up; the Put: {outcome}");
                break;
            }
        }

        Assert.IsEmpty(leftovers, string.Join("\n", leftovers));
    }

    /// <summary>Checksummed Put/Get (host) and Allocate/Publish/Get (GPU) round trips until the storm is over; returns how many.</summary>
    private static async Task<int> HealthyLoopAsync(NodeHarness h, Random random, ConcurrentQueue<string> violations, CancellationToken stormDone)
    {
        await using var client = await ConnectAsync(h, "healthy", "healthy");
        int rounds = 0;
        try
        {
            while (!stormDone.IsCancellationRequested || rounds < 20)
            {
                rounds++;
                if (rounds % 4 == 0)
                {
                    long length = random.Next(1, 600_000);
                    ulong pattern = (ulong)random.NextInt64();
                    var buffer = await client.AllocateAsync(length);
                    using var stream = buffer.Device.CreateStream();
                    await stream.FillPatternAsync(buffer.Memory, pattern);
                    var id = await client.PublishAsync(buffer, stream, new PutOptions { Consumers = 1 });
                    await using var got = await client.GetAsync(id);
                    if (await stream.ChecksumAsync(got.Memory) != PoolHarness.Expected(length, pattern))
                    {
                        violations.Enqueue($"healthy round {rounds}: GPU checksum mismatch");
                    }
                }
                else
                {
                    var data = random.Bytes(random.Next(1, 3 * WindowBytes / 2)); // two window halves and a bit: a Put and a Get of several parts
                    var id = await client.PutAsync(data, new PutOptions { Consumers = 1 });
                    var back = new byte[data.Length];
                    await client.GetAsync(id, back.AsMemory());
                    if (DataChecksum.Compute(back) != DataChecksum.Compute(data))
                    {
                        violations.Enqueue($"healthy round {rounds}: host checksum mismatch");
                    }
                }
            }

            await client.FlushAsync(); // its last release went one way: applied before the pool is compared with its baseline
        }
        catch (Exception e)
        {
            violations.Enqueue($"healthy round {rounds} failed: {e.GetType().Name}: {e.Message}");
        }

        return rounds;
    }

    /// <summary>One hostile client: <paramref name="count"/> generated frames, one at a time; reconnects after a frame that ends its connection and now and then at random.</summary>
    private static async Task HostileAsync(NodeHarness h, Random random, int index, int count, TubeId[] victimIds, ConcurrentBag<TubeId> hostileIds,
        ConcurrentQueue<string> violations, ConcurrentDictionary<string, int> outcomes, ConcurrentDictionary<string, int> sentByType)
    {
        var own = new List<TubeId>();
        var slabs = new List<(int Device, int Slab, int Generation)>();
        var client = await ConnectAsync(h, "hostile", $"hostile{index}");
        var clientEnded = h.SessionEnded(client.SessionId); // subscribed now: the node may end the session before the client notices
        try
        {
            for (int i = 0; i < count; i++)
            {
                var frame = Generate(random, own, slabs, victimIds);
                sentByType.AddOrUpdate(Enum.IsDefined(frame.Type) ? frame.Type.ToString() : "unknown", 1, (_, v) => v + 1);
                bool reconnect = random.Next(400) == 0; // now and then a client just goes away, with whatever it holds
                string where = $"client {index} frame {i} {frame.Category}";
                try
                {
                    var reply = await client.CallRawAsync(frame.Type, Raw(frame.Payload));
                    outcomes.AddOrUpdate("Ok", 1, (_, v) => v + 1);
                    if (frame.Expect != Expect.Any)
                    {
                        violations.Enqueue($"{where}: answered Ok, expected {frame.Expect}");
                    }

                    Learn(frame.Type, reply, own, slabs, hostileIds);
                }
                catch (TubeException e)
                {
                    outcomes.AddOrUpdate(e.Error.ToString(), 1, (_, v) => v + 1);
                    if (!Enum.IsDefined(e.Error) || string.IsNullOrWhiteSpace(e.Reason) || e.Reason.Contains("   at ", StringComparison.Ordinal) || e.Reason.Contains("\n", StringComparison.Ordinal))
                    {
                        violations.Enqueue($"{where}: a malformed error: {(ushort)e.Error} '{e.Reason}'");
                    }

                    var expected = frame.Expect switch
                    {
                        Expect.NotFound => TubeError.NotFound,
                        Expect.NotLeased => TubeError.NotLeased,
                        Expect.FrameTooLarge => TubeError.FrameTooLarge,
                        _ => e.Error,
                    };
                    if (e.Error != expected)
                    {
                        violations.Enqueue($"{where}: {e.Error} '{e.Reason}', expected {expected}");
                    }

                    reconnect |= e.Error == TubeError.FrameTooLarge;
                }
                catch (TubeNodeUnavailableException e)
                {
                    outcomes.AddOrUpdate("closed", 1, (_, v) => v + 1);
                    violations.Enqueue($"{where}: the node dropped the connection: {e.Message}");
                    reconnect = true;
                }

                if (reconnect)
                {
                    await client.DisposeAsync();
                    await clientEnded.WaitAsync(ChildProcess.Timeout); // what the dropped session held is given back before the pool is compared
                    own.Clear();
                    slabs.Clear();
                    client = await ConnectAsync(h, "hostile", $"hostile{index}");
                    clientEnded = h.SessionEnded(client.SessionId);
                }
            }
        }
        finally
        {
            await client.DisposeAsync();
            await clientEnded.WaitAsync(ChildProcess.Timeout);
        }
    }

    /// <summary>Remembers ids and slabs the node handed this client, to forge requests on them later.</summary>
    private static void Learn(FrameType type, byte[] reply, List<TubeId> own, List<(int, int, int)> slabs, ConcurrentBag<TubeId> hostileIds)
    {
        var r = new PayloadReader(reply);
        switch (type)
        {
            case FrameType.PutBegin:
            case FrameType.PutWhole: // committed already: its workflow's to delete
                own.Add(r.Id());
                hostileIds.Add(own[^1]);
                break;
            case FrameType.Allocate:
                own.Add(r.Id());
                hostileIds.Add(own[^1]);
                slabs.Add((r.I32(), r.I32(), r.I32()));
                break;
            case FrameType.ArenaLease:
                r.I64(); // the range's number
                slabs.Add((r.I32(), r.I32(), r.I32()));
                break;
            case FrameType.Get when reply.Length > 9:
                r.I64();
                r.U8(); // the path
                slabs.Add((r.I32(), r.I32(), r.I32()));
                break;
        }
    }

    private static PayloadWriter Raw(byte[] payload)
    {
        var w = new PayloadWriter();
        foreach (var b in payload)
        {
            w.U8(b);
        }

        return w;
    }

    private static readonly FrameType[] Requests = [FrameType.PutBegin, FrameType.PutPart, FrameType.PutCommit, FrameType.Allocate, FrameType.Publish, FrameType.Get, FrameType.GetToHost, FrameType.Release, FrameType.Where, FrameType.SlabClosed, FrameType.Delete, FrameType.Sync,
        FrameType.NamedPutBegin, FrameType.NamedCommit, FrameType.NamedGet, FrameType.NamedWhere, FrameType.NamedLoadFailed, FrameType.NamedDelete, FrameType.NamedAllocate,
        FrameType.ArenaLease, FrameType.ArenaCarve, FrameType.ArenaReturn, FrameType.PutWhole, FrameType.GetWhole];

    /// <summary>One hostile frame: every type, well formed or not, on own, foreign and made-up ids and slabs.</summary>
    private static Generated Generate(Random random, List<TubeId> own, List<(int Device, int Slab, int Generation)> slabs, TubeId[] victimIds)
    {
        int pick = random.Next(100);
        if (pick < 3)
        {
            return new(FrameType.Hello, "hello-again", Hello(random), Expect.Error); // a second Hello, after the handshake
        }

        if (pick < 6)
        {
            var nodeOnly = (FrameType)(128 + random.Next(3)); // Ok, Error, CloseSlab: the node's, never a request
            return new(nodeOnly, $"node-only {nodeOnly}", random.Bytes(random.Next(0, 40)), Expect.Error);
        }

        if (pick < 9)
        {
            int firstUnknown = Enum.GetValues<FrameType>().Where(t => (byte)t < 128).Max(t => (byte)t) + 1; // past the last request the protocol defines
            byte unknown = (byte)random.Next(firstUnknown, 128 + 128 - 3);
            unknown = unknown >= 128 ? (byte)(unknown + 3) : unknown; // past the requests up to 127, and 131..255
            if (random.Next(8) == 0)
            {
                unknown = 0;
            }

            return new((FrameType)unknown, "unknown", random.Bytes(random.Next(0, 60)), Expect.Error);
        }

        if (pick < 10 && random.Next(2) == 0)
        {
            // The network gateway's first frame after a Hello: it is only ever a connection's first frame (docs/protocol.md).
            return new(FrameType.GatewayHello, "gateway-hello-after-hello", new PayloadWriter().U16(Frames.Version).Bytes(random.Bytes(GatewayHello.KeyBytes)).Str("wf").Str("f").I64(1 << 20).I64(0).Memory.ToArray(), Expect.Error);
        }

        if (pick < 10)
        {
            // The admin request after a Hello: it is only ever a connection's first frame (docs/protocol.md).
            return new(FrameType.Status, "status-after-hello", new PayloadWriter().U16(Frames.Version).I32(random.Next(-5, 2000)).Memory.ToArray(), Expect.Error);
        }

        if (random.Next(400) == 0)
        {
            return new(Requests[random.Next(Requests.Length)], "oversized", random.Bytes((64 << 10) + random.Next(1, 5000)), Expect.FrameTooLarge);
        }

        var type = Requests[random.Next(Requests.Length)];
        var (payload, expect, category) = Request(type, random, own, slabs, victimIds);
        int mutation = random.Next(100);
        if (mutation < 12 && payload.Length > 0 && type != FrameType.Sync) // Sync has no fields: any bytes are a whole Sync and trailing garbage
        {
            return new(type, $"{type} truncated", payload[..random.Next(payload.Length)], Expect.Error);
        }

        if (mutation < 16)
        {
            return new(type, $"{type} random bytes", random.Bytes(random.Next(0, 120)), Expect.Any);
        }

        if (mutation < 20)
        {
            return new(type, $"{type} trailing garbage", [.. payload, .. random.Bytes(random.Next(1, 50))], expect);
        }

        return new(type, category, payload, expect);
    }

    private static byte[] Hello(Random random) =>
        new PayloadWriter().U16(random.Next(2) == 0 ? Frames.Version : (ushort)1).Str("hostile").Str("again").I64(WindowBytes).Memory.ToArray();

    /// <summary>A structured request: each field from a pool of valid, edge and hostile values. Well-formed requests on a victim's id must be NotFound (NotLeased for the lease-checked ones).</summary>
    private static (byte[] Payload, Expect Expect, string Category) Request(FrameType type, Random random, List<TubeId> own, List<(int Device, int Slab, int Generation)> slabs, TubeId[] victimIds)
    {
        var w = new PayloadWriter();
        int idKind = random.Next(10);
        TubeId id = idKind switch
        {
            < 4 when own.Count > 0 => own[random.Next(own.Count)],
            < 7 => victimIds[random.Next(victimIds.Length)],
            < 9 => TubeId.NewId(),
            _ => default,
        };
        bool foreign = victimIds.Contains(id);
        bool wellFormed = foreign && random.Next(10) < 7; // mostly: only the id is wrong, so the id is what is refused
        string idName = foreign ? "victim-id" : own.Contains(id) ? "own-id" : "made-up-id";
        Expect onForeign = type is FrameType.GetToHost or FrameType.Release ? Expect.NotLeased : Expect.NotFound;

        // Sizes: small and mid legal ones, and ones no GPU here could hold (refused at once). Legal
        // multi-GiB requests are left to the pressure tests: six tenants asking 2 GiB each of an 8 GiB
        // simulated GPU are answered at the speed of the evictions they cause, not within a frame's bound.
        long Length() => wellFormed ? random.Next(1, 1 << 20) : Pick(random, random.Next(1, 1 << 18), random.Next(1, 4 << 20), random.Next(1, 64 << 20), 0, -1, long.MinValue, long.MaxValue, 1L << 40, 1L << 62, 256L * 1024 * 1024 * 1024);
        int Device() => wellFormed ? 0 : Pick(random, 0, 0, 0, 1, -1, -2, int.MaxValue, int.MinValue);
        long Offset() => wellFormed ? 0 : Pick(random, 0, 0, random.Next(0, 1 << 20), -1, long.MinValue, long.MaxValue, 1L << 40);
        int WindowOffset() => wellFormed ? 0 : Pick(random, 0, WindowBytes / 2, WindowBytes - 1, WindowBytes, -1, int.MinValue, int.MaxValue);
        int PartLength() => wellFormed ? random.Next(1, WindowBytes / 2) : Pick(random, random.Next(1, WindowBytes / 2), 1, 0, -1, WindowBytes + 1, int.MaxValue, int.MinValue);
        int Consumers() => wellFormed ? 1 : Pick(random, 1, 2, 0, -1, int.MaxValue, int.MinValue);
        long Ttl() => wellFormed ? 0 : Pick(random, 0, TimeSpan.TicksPerSecond, -1, long.MaxValue, long.MinValue, TimeSpan.FromDays(7).Ticks + 1, TimeSpan.FromDays(3650).Ticks);

        switch (type)
        {
            case FrameType.PutBegin:
            case FrameType.Allocate:
                w.I64(Length()).I32(Device());
                return (w.Memory.ToArray(), Expect.Any, $"{type} size");
            case FrameType.PutPart:
                w.Id(id).I64(Offset()).I32(WindowOffset()).I32(PartLength());
                Tenant(w, random, wellFormed);
                w.I64(wellFormed ? 0 : Pick(random, 0, 1000, -1, long.MaxValue, long.MinValue));
                break;
            case FrameType.PutCommit:
            case FrameType.Publish:
                w.Id(id).I32(Consumers()).I64(Ttl()).U8(wellFormed ? (byte)0 : Pick(random, (byte)0, (byte)1, (byte)2, (byte)255));
                break;
            case FrameType.Get:
                w.Id(id).I32(wellFormed ? Pick(random, 0, -1) : Pick(random, 0, -1, 1, -2, int.MaxValue, int.MinValue))
                    .I32(wellFormed ? 0 : Pick(random, 0, 1, -1, int.MaxValue, int.MinValue)); // the wait: a victim's published data is never waited for
                break;
            case FrameType.GetToHost:
                w.Id(id).I64(Offset()).I32(WindowOffset()).I32(PartLength());
                break;
            case FrameType.PutWhole:
                w.I32(PartLength()).I32(Device()).I32(WindowOffset()).I64(wellFormed ? 0 : Pick(random, 0, 1000, -1, long.MaxValue, long.MinValue))
                    .I32(Consumers()).I64(Ttl()).U8(wellFormed ? (byte)0 : Pick(random, (byte)0, (byte)1, (byte)2, (byte)255));
                return (w.Memory.ToArray(), Expect.Any, "PutWhole");
            case FrameType.GetWhole:
                w.Id(id).I32(WindowOffset()).I32(PartLength()).I32(wellFormed ? 0 : Pick(random, 0, 1, -1, int.MaxValue, int.MinValue)); // a victim's id well formed: NotFound, as a Get's
                break;
            case FrameType.Release:
            case FrameType.Where:
            case FrameType.Delete:
                w.Id(id);
                break;
            case FrameType.Sync:
                return (wellFormed ? [] : random.Bytes(random.Next(1, 40)), Expect.Any, "Sync");
            case FrameType.NamedPutBegin:
            case FrameType.NamedAllocate:
                w.Str(Namespace(random)).Str(Pick(random, HostileNames)).I64(Length()).I32(Device());
                return (w.Memory.ToArray(), Expect.Any, $"{type}");
            case FrameType.NamedCommit:
                w.Id(id).U8(wellFormed ? (byte)1 : Pick(random, (byte)0, (byte)1, (byte)2, (byte)255)).I64(wellFormed ? 0 : Pick(random, 0, 1000, -1, long.MaxValue, long.MinValue));
                break;
            case FrameType.NamedGet when foreign && wellFormed:
                w.Str("").Str(VictimName).I32(0).I32(0).U8(0); // the victim's name, asked plainly: exactly NotFound
                return (w.Memory.ToArray(), Expect.NotFound, "NamedGet victim-name well-formed");
            case FrameType.NamedGet:
                w.Str(Namespace(random)).Str(Pick(random, HostileNames)).I32(Device()).I32(Pick(random, 0, 1, 50, -1, int.MaxValue)).U8(Pick(random, (byte)0, (byte)1, (byte)7));
                return (w.Memory.ToArray(), Expect.Any, "NamedGet");
            case FrameType.NamedWhere or FrameType.NamedDelete when foreign && wellFormed:
                w.Str("").Str(VictimName);
                return (w.Memory.ToArray(), Expect.NotFound, $"{type} victim-name well-formed");
            case FrameType.NamedWhere or FrameType.NamedDelete:
                w.Str(Namespace(random)).Str(Pick(random, HostileNames));
                return (w.Memory.ToArray(), Expect.Any, $"{type}");
            case FrameType.NamedLoadFailed:
                w.Str(Namespace(random)).Str(Pick(random, HostileNames)).Str(Pick(random, "", "disk on fire", new string('x', 4000)));
                return (w.Memory.ToArray(), Expect.Any, "NamedLoadFailed"); // bytes after its (no) fields are ignored, as after every payload's
            case FrameType.ArenaLease:
                w.I64(Length()).I32(Device());
                return (w.Memory.ToArray(), Expect.Any, "ArenaLease size");
            case FrameType.ArenaCarve:
                // A range number of its own, another session's (numbers are small and shared by the node) or made up; any piece.
                w.I64(Pick(random, 1L, 2L, 3L, random.Next(1, 200), 0, -1, long.MaxValue, long.MinValue)).Id(id).I64(Offset()).I64(Length());
                return (w.Memory.ToArray(), Expect.Any, $"ArenaCarve {idName}");
            case FrameType.ArenaReturn:
                w.I64(Pick(random, 1L, 2L, 3L, random.Next(1, 200), 0, -1, long.MaxValue, long.MinValue));
                return (w.Memory.ToArray(), Expect.Any, "ArenaReturn");
            case FrameType.SlabClosed:
                (int Device, int Slab, int Generation) slab = slabs.Count > 0 && random.Next(2) == 0 ? slabs[random.Next(slabs.Count)] : (0, random.Next(0, 4), random.Next(0, 3));
                int tweak = random.Next(5);
                w.I32(tweak == 1 ? Pick(random, 1, -1, int.MaxValue) : slab.Device)
                    .I32(tweak == 2 ? Pick(random, slab.Slab + 1, -1, int.MaxValue) : slab.Slab)
                    .I32(tweak == 3 ? Pick(random, slab.Generation + 1, 0, -1) : slab.Generation);
                return (w.Memory.ToArray(), Expect.Any, tweak == 0 ? "SlabClosed seen slab" : "SlabClosed forged slab");
        }

        return (w.Memory.ToArray(), wellFormed ? onForeign : Expect.Any, $"{type} {idName}{(wellFormed ? " well-formed" : "")}");
    }

    private const string VictimName = "victim-model";

    /// <summary>The names hostile clients use in their own scope (never the victim's: a well-formed Get of that must be NotFound), valid and not.</summary>
    private static readonly string[] HostileNames = ["m1", "m2", "", "bad name", "ctl\u0001", new string('n', 129), "victim/" + VictimName];

    /// <summary>Their own scope, a namespace nobody is granted, the victim's workflow's name as a namespace, or a malformed one.</summary>
    private static string Namespace(Random random) => Pick(random, "", "", "shared", "victim", "bad ns");

    /// <summary>A tenant name: valid, empty, or hostile (invalid UTF-8, control characters, too long, lying lengths).</summary>
    private static void Tenant(PayloadWriter w, Random random, bool valid)
    {
        switch (valid ? 0 : random.Next(10))
        {
            case 0: w.Str("tenant"); break;
            case 1: w.Str(""); break;
            case 2: w.Bytes([0xC3, 0x28]); break; // a broken two-byte sequence
            case 3: w.Bytes([0xED, 0xA0, 0x80]); break; // a UTF-16 surrogate in UTF-8
            case 4: w.Bytes([0xC0, 0xAF]); break; // overlong '/'
            case 5: w.Bytes([0xFF, 0xFE, 0x41]); break;
            case 6: w.Str("a\u0001b"); break;
            case 7: w.Bytes(Encoding.UTF8.GetBytes(new string('n', random.Next(257, 5000)))); break;
            case 8: w.I32(-1); break;
            default: w.I32(int.MaxValue); break;
        }
    }

    private static T Pick<T>(Random random, params T[] values) => values[random.Next(values.Length)];

    /// <summary>A client; hostile ones send their frames on the socket (the control ring refuses what is not a frame type before it is sent: its own hostile tests are ControlRingTests and RingSessionTests).</summary>
    private static async Task<TubeClient> ConnectAsync(NodeHarness h, string workflow, string function) =>
        await TubeClient.ConnectAsync(new TubeClientOptions
        {
            ControlRingBytes = workflow is "hostile" or "leaver" ? 0 : 64 << 10,
            SocketPath = h.Socket,
            Workflow = workflow,
            Function = function,
            WindowBytes = WindowBytes,
            CallTimeout = TimeSpan.FromSeconds(30),
            Gpus = new GpuSystemOptions { Backend = h.Node.Gpus.Backend, SimulatedTopology = h.Node.Gpus.Topology },
        });
}
