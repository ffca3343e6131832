// FaaSTube probe: the devices (real or simulated), their topology, and copy bandwidth by size,
// printed as tables like NVIDIA's nvbandwidth. Runs on the simulated GPU where there is no CUDA.
using System.Globalization;
using FaaSTube.Devices;
using FaaSTube.Diagnostics;
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
var report = await probe.MeasureAsync(gpus, options.Sizes);

Console.WriteLine();
Console.WriteLine($"Copy bandwidth on GPU 0, GB/s, median of {report.Iterations}{(report.Modelled ? " (link model, virtual clock)" : "")}");
Console.WriteLine($"  {"size",-10}{"H2D pinned",12}{"H2D pageable",14}{"D2H pinned",12}{"D2H pageable",14}{"D2D",10}");
foreach (var row in report.Rows)
{
    Console.WriteLine($"  {Mib(row.Bytes),-10}{row.HostToDevicePinned,12:F1}{row.HostToDevicePageable,14:F1}{row.DeviceToHostPinned,12:F1}{row.DeviceToHostPageable,14:F1}{row.DeviceToDevice,10:F1}");
}

Console.WriteLine($"  data check: GPU checksum {(report.ChecksumMatches ? "matches" : "DOES NOT MATCH")} the host's ({report.GpuChecksum:x16})");

if (report.PeerGigabytesPerSecond.Count > 0)
{
    int n = report.PeerGigabytesPerSecond.Count;
    Console.WriteLine();
    Console.WriteLine($"GPU -> GPU bandwidth, GB/s, {Mib(report.PeerBytes)} per copy (row: source, column: destination)");
    Console.WriteLine("       " + string.Concat(Enumerable.Range(0, n).Select(b => $"{b,8}")));
    for (int a = 0; a < n; a++)
    {
        Console.WriteLine($"  {a,3}  " + string.Concat(Enumerable.Range(0, n).Select(b => a == b ? "       -" : $"{report.PeerGigabytesPerSecond[a][b],8:F1}")));
    }
}

return report.ChecksumMatches ? 0 : 1;

static void PrintTopology(GpuTopology t)
{
    Console.WriteLine();
    Console.WriteLine($"Topology {t.Name}: host link {t.HostBytesPerSecond / 1e9:F0} GB/s per GPU per direction, device memory {t.DeviceMemoryBytesPerSecond / 1e9:F0} GB/s");
    if (t.GpuCount == 1)
    {
        Console.WriteLine("  one GPU, no peers");
        return;
    }

    Console.WriteLine("  " + string.Join(", ", TopologyMatrix.Legend.Select(l => $"{l.Cell} = {l.Meaning}")) + "; PCIe switch per GPU in brackets");
    Console.WriteLine("         " + string.Concat(Enumerable.Range(0, t.GpuCount).Select(b => $"{b,6}")));
    for (int a = 0; a < t.GpuCount; a++)
    {
        var cells = Enumerable.Range(0, t.GpuCount).Select(b => TopologyMatrix.Cell(t, a, b));
        Console.WriteLine($"  {a,3} [{t.PcieSwitch(a)}]" + string.Concat(cells.Select(c => $"{c,6}")));
    }
}

static string Gib(long bytes) => (bytes / (double)(1L << 30)).ToString("F1", CultureInfo.InvariantCulture) + " GiB";

static string Mib(long bytes) => (bytes / (double)(1 << 20)).ToString("0.##", CultureInfo.InvariantCulture) + " MiB";
