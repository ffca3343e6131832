using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Memory;
using FaaSTube.Topology;

namespace FaaSTube.Tests.Support;

/// <summary>A node on simulated GPUs with a private socket and a virtual clock for TTLs; clients in either mode.</summary>
internal sealed class NodeHarness : IAsyncDisposable
{
    private readonly List<TubeClient> _clients = [];

    private NodeHarness(TubeNode node) => Node = node;

    public TubeNode Node { get; }

    public VirtualClock Clock { get; private set; } = null!;

    public string Socket => Node.Options.SocketPath!;

    public static async Task<NodeHarness> StartAsync(GpuTopology? topology = null, Action<TubeNodeOptions>? configure = null, GpuBackend backend = GpuBackend.Simulated, Microsoft.Extensions.Logging.ILoggerFactory? loggerFactory = null, TimeProvider? time = null)
    {
        var clock = new VirtualClock();
        var options = new TubeNodeOptions
        {
            SocketPath = Path.Combine(Path.GetTempPath(), $"ft-{Guid.NewGuid():N}"[..20] + ".sock"),
            Gpus = new GpuSystemOptions { Backend = backend, SimulatedTopology = topology ?? GpuTopology.SingleH100 },
            Pool = new GpuPoolOptions { SlabBytes = 16 << 20, FloorBytes = 0, TrimInterval = null, ProactiveRestore = false },
            Transfers = new FaaSTube.Transfers.TransferEngineOptions { StagingBytes = 8 << 20, ChunkBytes = 1 << 20 },
            SweepInterval = null,
        };
        configure?.Invoke(options);
        return new NodeHarness(await TubeNode.StartAsync(options, loggerFactory, time ?? clock)) { Clock = clock }; // one clock for TTLs, pool windows and deadlines (or the test's own: a FakeTimeProvider whose timers it fires)
    }

    public async Task<TubeClient> ConnectAsync(bool inProcess, string workflow = "wf", string function = "f", int windowBytes = 2 << 20, int controlRingBytes = 64 << 10, long arenaBytes = 0)
    {
        var options = new TubeClientOptions
        {
            ControlRingBytes = controlRingBytes,
            SocketPath = Socket,
            Workflow = workflow,
            Function = function,
            WindowBytes = windowBytes,
            ArenaBytes = arenaBytes,
            Gpus = new GpuSystemOptions { Backend = Node.Gpus.Backend, SimulatedTopology = Node.Gpus.Topology },
        };
        var client = inProcess ? await TubeClient.ConnectInProcessAsync(Node, options) : await TubeClient.ConnectAsync(options);
        lock (_clients)
        {
            _clients.Add(client);
        }

        return client;
    }

    /// <summary>Completes when the node has cleaned up after session <paramref name="session"/>.</summary>
    public Task SessionEnded(long session)
    {
        var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Node.SessionEnded += id =>
        {
            if (id == session)
            {
                ended.TrySetResult();
            }
        };
        return ended.Task;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var client in _clients)
        {
            await client.DisposeAsync();
        }

        await Node.DisposeAsync();
    }
}
