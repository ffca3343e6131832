// A child process for the cross-process tests. Commands (one per run):
//   import <backend> <dir> <handle-hex> <check-length> <expected-checksum> <write-offset> <write-length> <seed>
//       maps the allocation, checks the checksum of [0, check-length), writes the seeded pattern
//       into [write-offset, +write-length), prints "ok", exits 0 (3 on a checksum mismatch)
//   hold <backend> <dir> <handle-hex>
//       maps the allocation, prints "ready", then waits for stdin to close (the test kills it)
//   exit
//       exits at once (its pid is then a dead owner)
//   tube-put <socket> <workflow> <length> <seed> <consumers>        Put the pattern, print the id
//   tube-publish <socket> <workflow> <length> <seed> <consumers>    Allocate, fill on the GPU, Publish, print the id
//   tube-get <socket> <workflow> <id> <device> <expected-checksum>  Get on a GPU, checksum there, release, print "ok"
//   tube-gethost <socket> <workflow> <id> <expected-checksum>       Get to host memory, checksum, print "ok"
//   tube-hold <socket> <workflow> <id>                              Get and print "ready", wait to be killed
//   tube-allocate-hold <socket> <workflow> <length>                 Allocate, print "ready", wait to be killed
//   tube-put-forever <socket> <workflow>                            Put 512 MiB over and over, "ready" after the first (killed mid-Put)
//   tube-node <socket>                                              run a node, print "ready", wait to be killed; on stdin
//       "stats <n>": once every session but n has ended and been cleaned up, print "stats <in-use> <reserved> <blocks> <sessions>" (GPU 0's pool)
//   tube-put-forever <socket> <workflow> <mib>                      PutBegin, "id <id>", PutParts, PutCommit, Delete of <mib> MiB, again; "ready" after the first
//   tube-publish-forever <socket> <workflow> <length>               Allocate, "id <id>", fill, Publish, Delete, again; "ready" after the first
//   tube-gethost-forever <socket> <workflow> <id> <checksum>        Get to host and check, again and again; "ready" after the first (exit 3 on a mismatch)
//   tube-get-forever <socket> <workflow> <id> <checksum>            Get on GPU 0, checksum there, release, again; "ready" after the first
//   tube-load-hang <socket> <workflow> <name> <length>            GetOrLoad <name>; its loader writes one slot, prints "loading", waits to be killed
//   ring-client <socket> <seed> <count> <capacity>                 the client's side of a control ring (RingClient.cs)
//   ucx-peer <host> <port>                                         a UCX endpoint to a listener, commands on stdin (UcxPeer.cs)
//   tube-remote <ucx://host:port> <workflow>                       a remote client, secret from FAASTUBE_REMOTE_SECRET, commands on stdin (TubeRemote.cs)
//   peer-node <listen> <ucx://peer> <workflow>                       node 2 of a node-to-node test, commands on stdin (PeerNode.cs)
//   ucx-vanish <host> <port> <count> <seed>                         connects with a ticket and vanishes mid-wireup, count times (UcxVanish.cs)
//   ucx-flood <host> <port> <before|after> <bytes> <connections> <rounds>  oversized eager messages before or after the proof (UcxFlood.cs)
//   ucx-attack <host> <port> <scenario>                             a hostile remote peer breaking one rule, reports what the node did (UcxAttack.cs)
// The tube-* commands open the backend FAASTUBE_BACKEND names (the tests set it to match their node).
using System.Globalization;
using FaaSTube.Channels;
using FaaSTube.Channels.Protocol;
using FaaSTube.Devices;
using FaaSTube.Kernels;

if (args.Length == 0 || args[0] == "exit")
{
    return 0;
}

if (args[0] == "ring-client")
{
    return RingClient.Run(args);
}

if (args[0] == "ucx-peer")
{
    return await UcxPeer.RunAsync(args);
}

if (args[0] == "ucx-vanish")
{
    return await UcxVanish.RunAsync(args);
}

if (args[0] == "ucx-flood")
{
    return await UcxFlood.RunAsync(args);
}

if (args[0] == "peer-node")
{
    return await PeerNode.RunAsync(args);
}

if (args[0] == "ucx-attack")
{
    return await UcxAttack.RunAsync(args);
}

if (args[0] == "tube-remote")
{
    return await TubeRemote.RunAsync(args);
}

if (args[0].StartsWith("tube-", StringComparison.Ordinal))
{
    return await Tube(args);
}

var options = new GpuSystemOptions
{
    Backend = Enum.Parse<GpuBackend>(args[1], ignoreCase: true),
    SimulatedMemoryDirectory = args[2] == "-" ? null : args[2],
};
using var system = GpuSystem.Open(options);
var device = system.Devices[0];
using var buffer = device.Import(IpcMemoryHandle.Parse(args[3]));
using var stream = device.CreateStream();

switch (args[0])
{
    case "import":
    {
        long checkLength = long.Parse(args[4], CultureInfo.InvariantCulture);
        ulong expected = ulong.Parse(args[5], CultureInfo.InvariantCulture);
        long writeOffset = long.Parse(args[6], CultureInfo.InvariantCulture);
        long writeLength = long.Parse(args[7], CultureInfo.InvariantCulture);
        ulong seed = ulong.Parse(args[8], CultureInfo.InvariantCulture);
        ulong actual = await stream.ChecksumAsync(buffer.Slice(0, checkLength));
        if (actual != expected)
        {
            Console.WriteLine($"checksum mismatch: expected {expected}, got {actual}");
            return 3;
        }

        await stream.FillPatternAsync(buffer.Slice(writeOffset, writeLength), seed);
        await stream.SynchronizeAsync();
        Console.WriteLine("ok");
        return 0;
    }

    case "hold":
        return HoldUntilKilled();

    default:
        return Unknown(args[0]);
}

static async Task<int> Tube(string[] args)
{
    string socket = args[1];
    if (args[0] == "tube-node")
    {
        await using var node = await TubeNode.StartAsync(new TubeNodeOptions
        {
            SocketPath = socket,
            Pool = new FaaSTube.Memory.GpuPoolOptions { SlabBytes = 16 << 20, FloorBytes = 0 },
        });
        var sessions = new SessionCounter(node);
        Console.WriteLine("ready");
        Console.Out.Flush();
        while (Console.ReadLine() is { } line)
        {
            if (line.StartsWith("stats ", StringComparison.Ordinal))
            {
                await sessions.AtMostAsync(int.Parse(line[6..], CultureInfo.InvariantCulture));
                var s = node.PoolOf(0).GetStatistics();
                Console.WriteLine($"stats {s.InUseBytes} {s.ReservedBytes} {s.Blocks} {node.SessionCount}");
                Console.Out.Flush();
            }
        }

        return 0;
    }

    await using var client = await TubeClient.ConnectAsync(new TubeClientOptions
    {
        SocketPath = socket,
        Workflow = args[2],
        Function = args[0],
        WindowBytes = 4 << 20, // the backend: FAASTUBE_BACKEND, set by the test
        ArenaBytes = args[0] == "tube-arena-hold" ? 4 << 20 : 0,
    });
    long Long(int i) => long.Parse(args[i], CultureInfo.InvariantCulture);
    switch (args[0])
    {
        case "tube-put":
        {
            var data = new byte[Long(3)];
            DataPattern.Fill(data, (ulong)Long(4));
            Console.WriteLine(await client.PutAsync(data, new PutOptions { Consumers = (int)Long(5) }));
            return 0;
        }

        case "tube-publish":
        {
            var buffer = await client.AllocateAsync(Long(3));
            using var stream = buffer.Device.CreateStream();
            await stream.FillPatternAsync(buffer.Memory, (ulong)Long(4));
            Console.WriteLine(await client.PublishAsync(buffer, stream, new PutOptions { Consumers = (int)Long(5) }));
            return 0;
        }

        case "tube-get":
        {
            await using var buffer = await client.GetAsync(TubeId.Parse(args[3]), (int)Long(4));
            using var stream = buffer.Device.CreateStream();
            return Report(await stream.ChecksumAsync(buffer.Memory), args[5]);
        }

        case "tube-gethost":
        {
            var id = TubeId.Parse(args[3]);
            var destination = new byte[64 << 20];
            long length = await client.GetAsync(id, destination.AsMemory());
            return Report(DataChecksum.Compute(destination.AsSpan(0, (int)length)), args[4]);
        }

        case "tube-load-hang":
        {
            var loader = NamedLoader.FromWriter(Long(4), async (writer, ct) =>
            {
                await writer.FlushAsync(ct);
                var slot = writer.GetMemory();
                slot.Span.Fill(0x5A);
                writer.Advance(slot.Length); // one slot is on its way to the node: the load is under way
                await writer.FlushAsync(ct);
                HoldUntilKilled("loading");
            });
            await using var buffer = await client.GetOrLoadAsync(args[3], loader);
            return 4; // the loader never returns: the test kills this process mid-load
        }

        case "tube-hold":
        {
            await using var buffer = await client.GetAsync(TubeId.Parse(args[3]));
            return HoldUntilKilled();
        }

        case "tube-put-forever" when args.Length > 3:
        {
            // The Put protocol by hand (PutBegin, PutPart per window half, PutCommit), so that the id is
            // printed before the data is committed: the test deletes whatever a kill leaves committed.
            long bytes = Long(3) << 20;
            const int Half = 2 << 20; // the window is 4 MiB: its two halves
            for (int round = 0; ; round++)
            {
                var id = new PayloadReader(await client.CallRawAsync(FrameType.PutBegin, new PayloadWriter().I64(bytes).I32(0))).Id();
                Console.WriteLine($"id {id}");
                Console.Out.Flush();
                var parts = new List<Task>();
                for (long offset = 0; offset < bytes; offset += Half)
                {
                    int half = (int)(offset / Half % 2);
                    parts.Add(client.CallRawAsync(FrameType.PutPart, new PayloadWriter().Id(id).I64(offset).I32(half * Half).I32((int)Math.Min(Half, bytes - offset)).Str("").I64(0)));
                }

                await Task.WhenAll(parts);
                await client.CallRawAsync(FrameType.PutCommit, new PayloadWriter().Id(id).I32(1).I64(0).U8(0));
                await client.DeleteAsync(id);
                if (round == 0)
                {
                    Console.WriteLine("ready");
                    Console.Out.Flush();
                }
            }
        }

        case "tube-put-forever":
        {
            // Puts 512 MiB again and again; says "ready" once the first is done, so a kill lands mid-Put.
            var data = new byte[512 << 20];
            await client.DeleteAsync(await client.PutAsync(data, new PutOptions { Consumers = 1 }));
            Console.WriteLine("ready");
            Console.Out.Flush();
            while (true)
            {
                await client.DeleteAsync(await client.PutAsync(data, new PutOptions { Consumers = 1 }));
            }
        }

        case "tube-publish-forever":
        {
            for (int round = 0; ; round++)
            {
                var buffer = await client.AllocateAsync(Long(3));
                using (var stream = buffer.Device.CreateStream())
                {
                    Console.WriteLine($"id {buffer.Id}"); // before Publish: the test deletes whatever a kill leaves committed
                    Console.Out.Flush();
                    await stream.FillPatternAsync(buffer.Memory, (ulong)round);
                    await client.DeleteAsync(await client.PublishAsync(buffer, stream, new PutOptions { Consumers = 1 }));
                }

                if (round == 0)
                {
                    Console.WriteLine("ready");
                    Console.Out.Flush();
                }
            }
        }

        case "tube-gethost-forever":
        {
            var id = TubeId.Parse(args[3]);
            var destination = new byte[64 << 20];
            for (int round = 0; ; round++)
            {
                long length = await client.GetAsync(id, destination.AsMemory());
                if (Report(DataChecksum.Compute(destination.AsSpan(0, (int)length)), args[4], quiet: true) != 0)
                {
                    return 3;
                }

                if (round == 0)
                {
                    Console.WriteLine("ready");
                    Console.Out.Flush();
                }
            }
        }

        case "tube-get-forever":
        {
            var id = TubeId.Parse(args[3]);
            for (int round = 0; ; round++)
            {
                await using (var buffer = await client.GetAsync(id, 0))
                {
                    using var stream = buffer.Device.CreateStream();
                    if (Report(await stream.ChecksumAsync(buffer.Memory), args[4], quiet: true) != 0)
                    {
                        return 3;
                    }
                }

                if (round == 0)
                {
                    Console.WriteLine("ready");
                    Console.Out.Flush();
                }
            }
        }

        case "tube-arena-hold":
        {
            // Three pieces carved from one arena range (sizes from the test), the first filled with
            // the seed's pattern and published; the others left unpublished; then held until killed.
            var pieces = new List<TubeBuffer>();
            foreach (var size in args[4].Split(','))
            {
                pieces.Add(await client.AllocateAsync(long.Parse(size, CultureInfo.InvariantCulture)));
            }

            using var stream = pieces[0].Device.CreateStream();
            await stream.FillPatternAsync(pieces[0].Memory, (ulong)Long(3));
            var published = await client.PublishAsync(pieces[0], stream, new PutOptions { Consumers = 1 });
            for (int i = 1; i < pieces.Count; i++)
            {
                await stream.FillPatternAsync(pieces[i].Memory, (ulong)Long(3) + (ulong)i); // written, never published
            }

            await client.FlushAsync(); // every carve and the publish applied on the node
            Console.WriteLine($"session {client.SessionId} leases {client.Arena?.Leases ?? 0}");
            Console.WriteLine($"id {published}");
            return HoldUntilKilled();
        }

        case "tube-allocate-hold":
        {
            await client.AllocateAsync(Long(3));
            return HoldUntilKilled();
        }

        default:
            return Unknown(args[0]);
    }
}

// Says "ready" and holds what it has until the test kills it (or closes stdin).
static int HoldUntilKilled(string line = "ready")
{
    Console.WriteLine(line);
    Console.Out.Flush();
    Console.In.ReadToEnd();
    return 0;
}

static int Unknown(string command)
{
    Console.Error.WriteLine($"unknown command {command}");
    return 2;
}

// Prints "ok" (exit 0) when the checksum is the expected one, else the mismatch (exit 3).
static int Report(ulong actual, string expected, bool quiet = false)
{
    bool same = actual == ulong.Parse(expected, CultureInfo.InvariantCulture);
    if (!same || !quiet)
    {
        Console.WriteLine(same ? "ok" : $"checksum mismatch {actual}");
    }

    return same ? 0 : 3;
}

/// <summary>
/// Sessions not yet cleaned up: those the node started minus those whose end (leases, uses, window
/// given back) it has reported. A session is counted as open until its clean-up has finished, so
/// statistics read after <see cref="AtMostAsync"/> never see a clean-up half done.
/// </summary>
internal sealed class SessionCounter
{
    private static readonly System.Reflection.FieldInfo Started =
        typeof(TubeNode).GetField("_nextSession", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)
        ?? throw new InvalidOperationException("TubeNode._nextSession is gone: update the test child");

    private readonly TubeNode _node;
    private long _ended;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public SessionCounter(TubeNode node)
    {
        _node = node;
        node.SessionEnded += _ =>
        {
            Interlocked.Increment(ref _ended);
            Interlocked.Exchange(ref _changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        };
    }

    /// <summary>Completes once at most <paramref name="open"/> sessions are started and not cleaned up (60 s at most).</summary>
    public async Task AtMostAsync(int open)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (true)
        {
            var changed = Volatile.Read(ref _changed).Task;
            if ((long)Started.GetValue(_node)! - Interlocked.Read(ref _ended) <= open)
            {
                return;
            }

            await changed.WaitAsync(timeout.Token);
        }
    }
}
