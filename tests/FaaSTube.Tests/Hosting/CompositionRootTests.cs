using System.Collections.Concurrent;
using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Hosting;
using FaaSTube.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static FaaSTube.Tests.Hosting.HostingHarness;

namespace FaaSTube.Tests.Hosting;

[TestClass]
public sealed class CompositionRootTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task The_node_passes_one_logger_factory_and_one_clock_to_every_pool_and_engine()
    {
        var random = Seeds.Create(TestContext);
        var logs = new EveryLevel();
        var clock = new VirtualClock();
        await using var node = await TubeNode.StartAsync(
            new TubeNodeOptions { SocketPath = null, Gpus = new GpuSystemOptions { Backend = GpuBackend.Simulated, SimulatedTopology = FaaSTube.Topology.GpuTopology.Dgx1V100 }, Pool = new() { SlabBytes = 16 << 20, FloorBytes = 0 }, Transfers = new() { StagingBytes = 8 << 20, ChunkBytes = 1 << 20 } },
            logs,
            clock);

        Assert.AreEqual(8, node.Gpus.Devices.Count);
        foreach (var device in node.Devices)
        {
            Assert.AreSame(node.Services, device.Pool.Services, "the pool runs with the node's services");
            Assert.AreSame(node.Services, device.Engine.Services, "the engine runs with the node's services");
        }

        Assert.AreSame(clock, node.Services.TimeProvider);
        Assert.AreSame(logs, node.Services.LoggerFactory);
        Assert.AreEqual(8, logs.Of("FaaSTube.Transfers.TransferEngine").Count(e => e.Contains("started", StringComparison.Ordinal)), "each engine logged its start");
        Assert.IsTrue(logs.Of("FaaSTube.Devices.GpuSystem").Any(), "the GPUs logged their backend choice");

        await using var client = await TubeClient.ConnectInProcessAsync(node, new TubeClientOptions { Workflow = "wf", WindowBytes = 1 << 20 });
        Assert.AreSame(node.Services, client.Services, "an in-process client shares the node's services");
        var data = random.Bytes(1 + random.Next(1 << 20));
        var back = new byte[data.Length];
        await client.GetAsync(await client.PutAsync(data), back.AsMemory());
        CollectionAssert.AreEqual(data, back);
        Assert.IsTrue(logs.Of("FaaSTube.Memory.GpuMemoryPool").Any(e => e.Contains("took slab", StringComparison.Ordinal)), "the pool logged its growth");
    }

    [TestMethod]
    public async Task The_DI_client_runs_with_the_containers_services()
    {
        string socket = NewSocket();
        using var node = await StartNodeHostAsync(socket);
        var logs = new EveryLevel();
        using var functions = Build(ClientSettings(socket), s => s.AddSingleton<ILoggerFactory>(logs).AddFaaSTubeClient());
        await functions.StartAsync();
        var client = await functions.Services.GetRequiredService<ITubeClientProvider>().GetClientAsync();
        Assert.AreSame(logs, client.Services.LoggerFactory);
        Assert.AreSame(functions.Services.GetRequiredService<FaaSTubeServices>(), client.Services, "one services record per container");
        Assert.IsTrue(logs.Of("FaaSTube.Hosting.TubeClientProvider").Any(e => e.Contains("Connected", StringComparison.Ordinal)));
        await functions.StopAsync();
        await node.StopAsync();
    }

    [TestMethod]
    public async Task Without_a_host_a_bad_nested_option_fails_the_start_naming_its_path()
    {
        var error = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => TubeNode.StartAsync(new TubeNodeOptions
        {
            SocketPath = null,
            Gpus = new GpuSystemOptions { Backend = GpuBackend.Simulated },
            Pool = new() { SlabBytes = 1000 },
        }));
        Assert.AreEqual("Pool:SlabBytes", error.ParamName);
    }

    /// <summary>Keeps every entry of every level with its category.</summary>
    private sealed class EveryLevel : ILoggerFactory
    {
        private readonly ConcurrentQueue<(string Category, string Text)> _entries = new();

        public IEnumerable<string> Of(string category) => _entries.Where(e => e.Category == category).Select(e => e.Text);

        public ILogger CreateLogger(string categoryName) => new Collector(this, categoryName);

        public void AddProvider(ILoggerProvider provider)
        {
        }

        public void Dispose()
        {
        }

        private sealed class Collector(EveryLevel owner, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                owner._entries.Enqueue((category, formatter(state, exception)));
        }
    }
}
