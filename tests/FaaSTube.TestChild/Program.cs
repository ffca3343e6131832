// A child process for the cross-process tests. Commands (one per run):
//   import <backend> <dir> <handle-hex> <check-length> <expected-checksum> <write-offset> <write-length> <seed>
//       maps the allocation, checks the checksum of [0, check-length), writes the seeded pattern
//       into [write-offset, +write-length), prints "ok", exits 0 (3 on a checksum mismatch)
//   hold <backend> <dir> <handle-hex>
//       maps the allocation, prints "ready", then waits for stdin to close (the test kills it)
//   exit
//       exits at once (its pid is then a dead owner)
using System.Globalization;
using FaaSTube.Devices;

if (args.Length == 0 || args[0] == "exit")
{
    return 0;
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
        Console.WriteLine("ready");
        Console.Out.Flush();
        Console.In.ReadToEnd();
        return 0;

    default:
        Console.Error.WriteLine($"unknown command {args[0]}");
        return 2;
}
