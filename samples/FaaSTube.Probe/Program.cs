// FaaSTube probe: the devices (real or simulated), their topology, and copy bandwidth by size,
// printed as tables like NVIDIA's nvbandwidth. Runs on the simulated GPU where there is no CUDA.
using System.Globalization;
using FaaSTube.Devices;
using FaaSTube.Samples.Probe;
using FaaSTube.Topology;
using FaaSTube.Devices.Simulated;

ProbeOptions options;
try
{
    options = ProbeOptions.Parse(args);
}
catch (Exception e) when (e is ArgumentException or FormatException)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}

var clock = options.Model ? new VirtualClock() : null;
using var gpus = GpuSystem.Open(new GpuSystemOptions
{
    Backend = options.Backend,
    SimulatedTopology = options.Topology,
    SimulatedClock = clock,
});

Console.WriteLine($"FaaSTube probe: {gpus.Backend} backend, {gpus.SelectionReason}");
Console.WriteLine();
Console.WriteLine("Devices");
foreach (var d in gpus.Devices)
{
    var memory = d.GetMemoryInfo();
    Console.WriteLine($"  GPU {d.Ordinal}  {d.Name,-40} {Gib(memory.Total),8} total {Gib(memory.Free),8} free  pci {d.PciBusId}");
}

PrintTopology(gpus.Topology);

var probe = new BandwidthProbe(options.Iterations, clock);
var device = gpus.Devices[0];
using var stream = device.CreateStream();
long largest = options.Sizes.Max();
using var deviceA = device.Allocate(largest);
using var deviceB = device.Allocate(largest);
using var pinned = device.AllocatePinned(largest);
var pageable = new byte[largest];
Random.Shared.NextBytes(pageable);
pageable.CopyTo(pinned.GetSpan());

Console.WriteLine();
Console.WriteLine($"Copy bandwidth on GPU 0, GB/s, median of {options.Iterations}{(clock is null ? "" : " (link model, virtual clock)")}");
Console.WriteLine($"  {"size",-10}{"H2D pinned",12}{"H2D pageable",14}{"D2H pinned",12}{"D2H pageable",14}{"D2D",10}");
foreach (long size in options.Sizes)
{
    var h2dPinned = await probe.MeasureAsync(size, () => stream.CopyAsync(pinned.Memory[..(int)size], deviceA.Slice(0, size)));
    var h2dPageable = await probe.MeasureAsync(size, () => stream.CopyAsync(pageable.AsMemory(0, (int)size), deviceA.Slice(0, size)));
    var d2hPinned = await probe.MeasureAsync(size, () => stream.CopyAsync(deviceA.Slice(0, size), pinned.Memory[..(int)size]));
    var d2hPageable = await probe.MeasureAsync(size, () => stream.CopyAsync(deviceA.Slice(0, size), pageable.AsMemory(0, (int)size)));
    var d2d = await probe.MeasureAsync(size, () => stream.CopyAsync(deviceA.Slice(0, size), deviceB.Slice(0, size)));
    Console.WriteLine($"  {Mib(size),-10}{h2dPinned,12:F1}{h2dPageable,14:F1}{d2hPinned,12:F1}{d2hPageable,14:F1}{d2d,10:F1}");
}

ulong expected = FaaSTube.Kernels.DataChecksum.Compute(pageable.AsSpan(0, (int)options.Sizes.Min()));
ulong onGpu = await stream.ChecksumAsync(deviceA.Slice(0, options.Sizes.Min()));
Console.WriteLine($"  data check: GPU checksum {(onGpu == expected ? "matches" : "DOES NOT MATCH")} the host's ({onGpu:x16})");

if (gpus.Devices.Count > 1)
{
    await PrintPeerMatrix(gpus, probe, options.Sizes.Max());
}

return onGpu == expected ? 0 : 1;

static async Task PrintPeerMatrix(GpuSystem gpus, BandwidthProbe probe, long size)
{
    int n = gpus.Devices.Count;
    var buffers = gpus.Devices.Select(d => d.Allocate(size)).ToArray();
    try
    {
        Console.WriteLine();
        Console.WriteLine($"GPU -> GPU bandwidth, GB/s, {Mib(size)} per copy (row: source, column: destination)");
        Console.WriteLine("       " + string.Concat(Enumerable.Range(0, n).Select(b => $"{b,8}")));
        for (int a = 0; a < n; a++)
        {
            using var stream = gpus.Devices[a].CreateStream();
            var row = new List<string>();
            for (int b = 0; b < n; b++)
            {
                row.Add(a == b ? "       -" : $"{await probe.MeasureAsync(size, () => stream.CopyAsync(buffers[a], buffers[b])),8:F1}");
            }

            Console.WriteLine($"  {a,3}  " + string.Concat(row));
        }
    }
    finally
    {
        foreach (var b in buffers)
        {
            b.Dispose();
        }
    }
}

static void PrintTopology(GpuTopology t)
{
    Console.WriteLine();
    Console.WriteLine($"Topology {t.Name}: host link {t.HostBytesPerSecond / 1e9:F0} GB/s per GPU per direction, device memory {t.DeviceMemoryBytesPerSecond / 1e9:F0} GB/s");
    if (t.GpuCount == 1)
    {
        Console.WriteLine("  one GPU, no peers");
        return;
    }

    Console.WriteLine("  direct links (NVn = n NVLinks, NVS = NVSwitch, PIX = PCIe peer, - = none); PCIe switch per GPU in brackets");
    Console.WriteLine("         " + string.Concat(Enumerable.Range(0, t.GpuCount).Select(b => $"{b,5}")));
    for (int a = 0; a < t.GpuCount; a++)
    {
        var cells = Enumerable.Range(0, t.GpuCount).Select(b => a == b ? "X" : t.Peer(a, b) switch
        {
            { Kind: PeerLinkKind.NvLink } l => $"NV{l.LinkCount}",
            { Kind: PeerLinkKind.NvSwitch } => "NVS",
            { Kind: PeerLinkKind.Pcie } => "PIX",
            _ => "-",
        });
        Console.WriteLine($"  {a,3} [{t.PcieSwitch(a)}]" + string.Concat(cells.Select(c => $"{c,5}")));
    }
}

static string Gib(long bytes) => (bytes / (double)(1L << 30)).ToString("F1", CultureInfo.InvariantCulture) + " GiB";

static string Mib(long bytes) => (bytes / (double)(1 << 20)).ToString("0.##", CultureInfo.InvariantCulture) + " MiB";
