using BenchmarkDotNet.Attributes;
using FaaSTube.Topology;
using FaaSTube.Transfers;
using FaaSTube.Transfers.Routing;

namespace FaaSTube.Bench.Routing;

/// <summary>
/// One routing decision (Route + Release) on 8 and 16 GPUs, on an idle machine and with a
/// background of flows holding links. Target: &lt;= 10 us for 8 GPUs.
/// </summary>
public class RoutingBenchmarks
{
    private PathRouter _router = null!;
    private readonly List<RouteReservation> _background = [];
    private int _pair;

    [Params(8, 16)]
    public int Gpus { get; set; }

    [Params(false, true)]
    public bool Busy { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _router = new PathRouter(Gpus == 8 ? GpuTopology.Dgx1V100 : TwoCubeMeshes());
        if (Busy)
        {
            var random = new Random(7);
            for (int i = 0; i < Gpus; i++)
            {
                _background.Add(_router.Route(random.Next(Gpus), random.Next(Gpus)));
            }
        }
    }

    [Benchmark]
    public double RouteAndRelease()
    {
        int a = _pair % Gpus, b = (_pair * 5 + 3) % Gpus;
        _pair++;
        using var flow = _router.Route(a, b);
        return flow.BytesPerSecond;
    }

    /// <summary>16 GPUs: two DGX-1 hybrid cube-meshes, GPU i of one joined to GPU i of the other by one NVLink.</summary>
    internal static GpuTopology TwoCubeMeshes()
    {
        var one = GpuTopology.Dgx1V100;
        var peers = new PeerLink[16, 16];
        for (int a = 0; a < 16; a++)
        {
            for (int b = 0; b < 16; b++)
            {
                if (a / 8 == b / 8 && a != b)
                {
                    peers[a, b] = one.Peer(a % 8, b % 8);
                }
                else if (a % 8 == b % 8 && a != b)
                {
                    peers[a, b] = new PeerLink(PeerLinkKind.NvLink, 1, 24e9);
                }
            }
        }

        return new GpuTopology("2x-dgx1", peers, Enumerable.Range(0, 16).Select(g => g / 2).ToArray(), 12e9, 900e9, 32L << 30, TimeSpan.FromMicroseconds(5));
    }
}

/// <summary>A copy inside one GPU through the router (one local path) against the plain stream copy: the router's overhead (target &lt;= 10 us).</summary>
[MovesBytes]
public class LocalRoutedCopyBenchmarks
{
    private FaaSTube.Devices.GpuSystem _gpus = null!;
    private MultiPathCopier _copier = null!;
    private FaaSTube.Devices.DeviceBuffer _a = null!;
    private FaaSTube.Devices.DeviceBuffer _b = null!;
    private FaaSTube.Devices.GpuStream _stream = null!;

    [Params(64L << 10, 64L << 20)]
    public long Bytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _gpus = FaaSTube.Devices.GpuSystem.Open();
        _copier = new MultiPathCopier(_gpus);
        _a = _gpus.Devices[0].Allocate(Bytes);
        _b = _gpus.Devices[0].Allocate(Bytes);
        _stream = _gpus.Devices[0].CreateStream();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stream.Dispose();
        _copier.Dispose();
        _a.Dispose();
        _b.Dispose();
        _gpus.Dispose();
    }

    [Benchmark]
    public async Task ThroughRouter() => await _copier.CopyAsync(_a, _b);

    [Benchmark(Baseline = true)]
    public async Task PlainStreamCopy() => await _stream.CopyAsync(_a, _b);
}
