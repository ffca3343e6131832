using FaaSTube.Platform;
using FaaSTube.Topology;

namespace FaaSTube.Devices.Simulated;

/// <summary>What the simulated GPUs of one <see cref="GpuSystem"/> share: topology, links, clock, memory folder.</summary>
internal sealed class SimulatedMachine
{
    private readonly SimulatedLink[] _hostToDevice;
    private readonly SimulatedLink[] _deviceToHost;
    private readonly SimulatedLink[] _local;
    private readonly SimulatedLink?[,] _peer;

    public SimulatedMachine(GpuSystemOptions options)
    {
        Topology = options.SimulatedTopology ?? throw new ArgumentException("SimulatedTopology is required.", nameof(options));
        Clock = options.SimulatedClock;
        RealTime = options.SimulatedRealTime;
        Directory = options.SimulatedMemoryDirectory ?? SharedMemoryFile.DefaultDirectory;
        int n = Topology.GpuCount;
        var latency = Topology.LinkLatency;
        _hostToDevice = new SimulatedLink[n];
        _deviceToHost = new SimulatedLink[n];
        _local = new SimulatedLink[n];
        _peer = new SimulatedLink?[n, n];
        for (int g = 0; g < n; g++)
        {
            _hostToDevice[g] = new SimulatedLink($"host->gpu{g}", Topology.HostBytesPerSecond, latency);
            _deviceToHost[g] = new SimulatedLink($"gpu{g}->host", Topology.HostBytesPerSecond, latency);
            _local[g] = new SimulatedLink($"gpu{g} memory", Topology.DeviceMemoryBytesPerSecond, latency);
            for (int p = 0; p < n; p++)
            {
                var link = Topology.Peer(g, p);
                if (p != g && link.Kind != PeerLinkKind.None)
                {
                    _peer[g, p] = new SimulatedLink($"gpu{g}->gpu{p}", link.BytesPerSecond, latency);
                }
            }
        }
    }

    public GpuTopology Topology { get; }

    public VirtualClock? Clock { get; }

    /// <summary>Ops complete in wall-clock time as the link model says (<see cref="GpuSystemOptions.SimulatedRealTime"/>).</summary>
    public bool RealTime { get; }

    public string Directory { get; }

    /// <summary>
    /// Called on the stream's worker before each op runs: tests observe progress here, cancel at an
    /// exact chunk, or throw to inject a failure into that op.
    /// </summary>
    internal Action<StreamOp>? OnExecute { get; set; }

    /// <summary>
    /// Host copies that reached a stream with pageable (not page-locked) host memory. CUDA runs those
    /// synchronously on the issuing thread; <see cref="GpuStream"/> stages them, so this stays 0.
    /// </summary>
    internal int PageableHostCopies => Volatile.Read(ref _pageableHostCopies);

    private int _pageableHostCopies;

    internal void CountPageable() => Interlocked.Increment(ref _pageableHostCopies);

    /// <summary>
    /// The links a copy uses, in the order it crosses them. A peer copy without a direct link goes
    /// through the host (source's lane to the host, then the host to the destination).
    /// </summary>
    public IEnumerable<SimulatedLink> LinksFor(StreamOpKind kind, int source, int destination)
    {
        switch (kind)
        {
            case StreamOpKind.HostToDevice:
                yield return _hostToDevice[destination];
                break;
            case StreamOpKind.DeviceToHost:
                yield return _deviceToHost[source];
                break;
            case StreamOpKind.DeviceToDevice when source != destination:
                if (_peer[source, destination] is { } direct)
                {
                    yield return direct;
                }
                else
                {
                    yield return _deviceToHost[source];
                    yield return _hostToDevice[destination];
                }

                break;
            default:
                yield return _local[destination];
                break;
        }
    }
}
