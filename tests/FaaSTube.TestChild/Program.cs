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
//   tube-node <socket>                                              run a node, print "ready", wait to be killed
// The tube-* commands open the backend FAASTUBE_BACKEND names (the tests set it to match their node).
using System.Globalization;
using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Kernels;

if (args.Length == 0 || args[0] == "exit")
{
    return 0;
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
        return HoldUntilKilled();
    }

    await using var client = await TubeClient.ConnectAsync(new TubeClientOptions
    {
        SocketPath = socket,
        Workflow = args[2],
        Function = args[0],
        WindowBytes = 4 << 20, // the backend: FAASTUBE_BACKEND, set by the test
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

        case "tube-hold":
        {
            await using var buffer = await client.GetAsync(TubeId.Parse(args[3]));
            return HoldUntilKilled();
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
static int HoldUntilKilled()
{
    Console.WriteLine("ready");
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
static int Report(ulong actual, string expected)
{
    bool same = actual == ulong.Parse(expected, CultureInfo.InvariantCulture);
    Console.WriteLine(same ? "ok" : $"checksum mismatch {actual}");
    return same ? 0 : 3;
}
