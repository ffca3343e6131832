using FaaSTube.Channels;
using FaaSTube.Hosting;
using FaaSTube.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using static FaaSTube.Tests.Hosting.HostingHarness;

namespace FaaSTube.Tests.Hosting;

[TestClass]
public sealed class NodeHostingTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task The_node_starts_with_the_host_and_its_stop_lets_a_call_in_flight_finish()
    {
        var random = Seeds.Create(TestContext);
        string socket = NewSocket();
        using var host = NodeHost(socket, ("FaaSTube:Node:Pool:TrimInterval", "1.00:00:00")); // no trim: no slab-close traffic of its own from the client
        await host.StartAsync();
        var service = host.Services.GetRequiredService<TubeNodeHostedService>();
        Assert.IsTrue(File.Exists(socket), "the node listens once the host started");

        await using var client = await TubeClient.ConnectAsync(ClientOptions(socket));
        var data = random.Bytes((64 << 10) + random.Next(4096));
        var back = new byte[data.Length];
        await client.GetAsync(await client.PutAsync(data), back.AsMemory());
        CollectionAssert.AreEqual(data, back, "the hosted node serves");
        await client.FlushAsync(); // the Get's one-way Release is applied: the next request the node starts is the test's

        // The next request the node starts is held inside it (its slot taken) until the gate opens.
        using var gate = new ManualResetEventSlim();
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int armed = 1;
        service.Node.RequestStarted += _ =>
        {
            if (Interlocked.Exchange(ref armed, 0) == 1)
            {
                held.TrySetResult();
                gate.Wait();
            }
        };
        var flush = client.FlushAsync(); // one request: a round trip to the node
        await held.Task;

        var stopping = service.StopAsync(CancellationToken.None);
        Assert.IsFalse(stopping.IsCompleted, "the stop waits for the call in flight");
        Assert.IsFalse(File.Exists(socket), "the node stopped listening first");
        var refused = await Assert.ThrowsAsync<TubeNodeUnavailableException>(() => TubeClient.ConnectAsync(ClientOptions(socket)));
        Assert.AreEqual(FaaSTubeErrorCode.NodeUnavailable, refused.Code, "a new client is told clearly");

        gate.Set();
        await flush; // answered, not failed with "node unavailable"
        await stopping;
        var gone = await Assert.ThrowsAsync<TubeNodeUnavailableException>(() => client.FlushAsync());
        Assert.AreEqual(FaaSTubeErrorCode.NodeUnavailable, gone.Code, "after the stop the client is told the node is gone");
        Assert.ThrowsExactly<InvalidOperationException>(() => service.Node, "no node runs after the stop");
        await host.StopAsync();
    }

    [TestMethod]
    public async Task Options_bind_from_the_FaaSTube_section_and_reach_the_node_its_pool_and_its_engine()
    {
        string socket = NewSocket();
        using var host = NodeHost(socket,
            ("FaaSTube:Node:MaxFrameBytes", "2048"),
            ("FaaSTube:Node:DefaultTtl", "00:02:30"),
            ("FaaSTube:Node:Pool:MaxBytes", (512L << 20).ToString(System.Globalization.CultureInfo.InvariantCulture)),
            ("FaaSTube:Node:Transfers:BatchChunks", "7"));
        await host.StartAsync();
        var node = host.Services.GetRequiredService<TubeNodeHostedService>().Node;

        Assert.AreEqual(socket, node.SocketPath);
        Assert.AreEqual(2048, node.Options.MaxFrameBytes);
        Assert.AreEqual(TimeSpan.FromSeconds(150), node.Options.DefaultTtl);
        Assert.AreEqual(FaaSTube.Devices.GpuBackend.Simulated, node.Gpus.Backend, "FaaSTube:Node:Gpus:Backend");
        Assert.AreEqual(1L << 30, node.Gpus.Devices[0].TotalMemory, "FaaSTube:Node:Gpus:SimulatedMemoryBytes");
        Assert.AreEqual(16L << 20, node.Options.Pool.SlabBytes);
        Assert.AreEqual(512L << 20, node.Options.Pool.MaxBytes);
        Assert.AreEqual(1 << 20, node.Devices[0].Engine.Options.ChunkBytes, "the engine runs with the bound chunk size");
        Assert.AreEqual(7, node.Devices[0].Engine.Options.BatchChunks);
        Assert.AreEqual(8 << 20, node.Devices[0].Engine.StagingSlots * node.Devices[0].Engine.Options.ChunkBytes, "the staging memory the bound options asked for");
        await host.StopAsync();
    }

    [TestMethod]
    [DataRow("FaaSTube:Node:MaxFrameBytes", "100")]
    [DataRow("FaaSTube:Node:MaxRequestsInFlight", "0")]
    [DataRow("FaaSTube:Node:Pool:SlabBytes", "1000")]
    [DataRow("FaaSTube:Node:Transfers:ChunkBytes", "1024")]
    [DataRow("FaaSTube:Node:LoadTimeout", "00:00:00")]
    [DataRow("FaaSTube:Node:LoadTimeout", "2.00:00:00")]
    [DataRow("FaaSTube:Node:CacheHalfLife", "00:00:00.5")]
    [DataRow("FaaSTube:Node:Pool:MaxPartitionCacheBytes", "0")]
    public async Task An_invalid_option_fails_the_start_naming_it(string key, string value)
    {
        string socket = NewSocket();
        using var host = NodeHost(socket, (key, value));
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        StringAssert.Contains(error.Message, key + ":", "the message names the option by its configuration path");
        Assert.IsFalse(File.Exists(socket), "nothing started");
    }

    [TestMethod]
    public async Task The_node_keeps_the_options_it_started_with()
    {
        string socket = NewSocket();
        var options = new TubeNodeOptions
        {
            SocketPath = socket,
            Gpus = new FaaSTube.Devices.GpuSystemOptions { Backend = FaaSTube.Devices.GpuBackend.Simulated },
            Pool = new FaaSTube.Memory.GpuPoolOptions { SlabBytes = 16 << 20, FloorBytes = 0 },
            Transfers = new FaaSTube.Transfers.TransferEngineOptions { StagingBytes = 8 << 20, ChunkBytes = 1 << 20 },
        };
        await using var node = await TubeNode.StartAsync(options);

        // Changes after the start, to the caller's object and to the copy the node hands out, reach nothing.
        options.AllowedUids = [];
        options.MaxWindowBytes = 8 << 10;
        options.Pool.SlabBytes = 1 << 30;
        node.Options.AllowedUids = [];
        Assert.IsNull(node.Options.AllowedUids, "the node's settings are as they were at start");
        Assert.AreEqual(16L << 20, node.Options.Pool.SlabBytes);

        await using var client = await TubeClient.ConnectAsync(ClientOptions(socket)); // a 1 MiB window, this process's user: both allowed only by the start's settings
        var data = new byte[] { 1, 2, 3 };
        var back = new byte[3];
        await client.GetAsync(await client.PutAsync(data), back.AsMemory());
        CollectionAssert.AreEqual(data, back);
    }

    [TestMethod]
    public async Task Building_the_node_service_opens_nothing_until_the_host_starts()
    {
        string socket = NewSocket();
        var memory = Directory.CreateTempSubdirectory("faastube-hosting-").FullName;
        try
        {
            using var host = NodeHost(socket, ("FaaSTube:Node:Gpus:SimulatedMemoryDirectory", memory));
            var service = host.Services.GetRequiredService<TubeNodeHostedService>();
            _ = host.Services.GetServices<IHostedService>().ToList();
            Assert.IsFalse(File.Exists(socket), "no socket before the start");
            Assert.ThrowsExactly<InvalidOperationException>(() => service.Node, "no node before the start");

            await host.StartAsync();
            Assert.IsTrue(File.Exists(socket), "the start listens");
            Assert.AreEqual(1, service.Node.Gpus.Devices.Count, "the start opened the GPUs");
            await host.StopAsync();
            Assert.IsFalse(File.Exists(socket), "the stop removed the socket");
        }
        finally
        {
            Directory.Delete(memory, recursive: true);
        }
    }
}
