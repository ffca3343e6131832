using System.Globalization;
using System.Net.Http.Json;
using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Samples.FunctionHost.Functions;
using FaaSTube.Samples.FunctionHost.Gateway;
using FaaSTube.Samples.FunctionHost.Hosting;
using FaaSTube.Samples.Traffic;
using Microsoft.AspNetCore.Builder;

namespace FaaSTube.Tests.Samples;

/// <summary>
/// The function host sample on real Kestrel on loopback, in this process: a node on a private
/// socket (simulated GPU), one WebApplication per function and one for the gateway, each on an
/// ephemeral port, each function's client reaching the node through the socket (AddFaaSTubeClient).
/// Ready means the health endpoint answered 200, polled until a deadline.
/// </summary>
internal sealed class FunctionHostHarness : IAsyncDisposable
{
    private static readonly TimeSpan ReadyDeadline = TimeSpan.FromSeconds(60);
    private readonly List<WebApplication> _apps = [];

    private FunctionHostHarness(TubeNode? node) => Node = node;

    public TubeNode? Node { get; }

    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromMinutes(2) };

    public Uri? Gateway { get; private set; }

    public static string NewSocket() => Path.Combine(Path.GetTempPath(), $"ft-{Guid.NewGuid():N}"[..20] + ".sock");

    public static async Task<TubeNode> StartNodeAsync(string? socket = null) => await TubeNode.StartAsync(new TubeNodeOptions
    {
        SocketPath = socket ?? NewSocket(),
        Gpus = new GpuSystemOptions { Backend = GpuBackend.Simulated, SimulatedMemoryBytes = 2L << 30 },
        Pool = new FaaSTube.Memory.GpuPoolOptions { SlabBytes = 128 << 20, FloorBytes = 0 },
    });

    /// <summary>A node, preprocess, detect, <paramref name="fanOut"/> classifiers and the gateway.</summary>
    /// <param name="fanOut">How many classifiers.</param>
    /// <param name="functionSocket">Where the functions look for their node (default: the node's socket; the gateway always has the node).</param>
    public static async Task<FunctionHostHarness> StartWorkflowAsync(int fanOut, string? functionSocket = null)
    {
        var harness = new FunctionHostHarness(await StartNodeAsync());
        try
        {
            var socket = functionSocket ?? harness.Node!.SocketPath!;
            var pre = await harness.StartFunctionAsync(Stage.Preprocess, socket);
            var det = await harness.StartFunctionAsync(Stage.Detect, socket);
            var gatewayArgs = new List<string> { $"--Gateway:Preprocess={pre}", $"--Gateway:Detect={det}" };
            for (int k = 0; k < fanOut; k++)
            {
                gatewayArgs.Add($"--Gateway:Classify:{k}={await harness.StartFunctionAsync(Stage.Classify, socket)}");
            }

            harness.Gateway = await harness.StartAsync(GatewayApp.Create([.. ClientArgs(harness.Node!.SocketPath!), .. gatewayArgs]));
            return harness;
        }
        catch
        {
            await harness.DisposeAsync();
            throw;
        }
    }

    /// <summary>No node: functions are started with <see cref="StartFunctionAsync"/> against any socket.</summary>
    public static FunctionHostHarness WithoutNode() => new(null);

    public Task<Uri> StartFunctionAsync(Stage stage, string socket) => StartAsync(FunctionApp.Create(ClientArgs(socket), stage));

    /// <summary>Posts frames to the gateway and expects its answer.</summary>
    public async Task<TrafficResponse> SendAsync(byte[] frames)
    {
        using var content = new ByteArrayContent(frames);
        using var response = await Http.PostAsync(new Uri(Gateway!, "traffic"), content);
        Assert.IsTrue(response.IsSuccessStatusCode, $"gateway: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return (await response.Content.ReadFromJsonAsync(HostJson.Default.TrafficResponse))!;
    }

    /// <summary>Posts <paramref name="content"/> to the gateway: its status and body.</summary>
    public async Task<(System.Net.HttpStatusCode Status, string Text)> PostToGatewayAsync(HttpContent content)
    {
        using var response = await Http.PostAsync(new Uri(Gateway!, "traffic"), content);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    private static string[] ClientArgs(string socket) =>
    [
        "--urls=http://127.0.0.1:0",
        $"--FaaSTube:Client:SocketPath={socket}",
        "--FaaSTube:Client:Gpus:Backend=Simulated",
        "--FaaSTube:Client:Gpus:SimulatedMemoryBytes=" + (2L << 30).ToString(CultureInfo.InvariantCulture),
        "--Logging:LogLevel:Default=Warning",
    ];

    private async Task<Uri> StartAsync(WebApplication app)
    {
        _apps.Add(app);
        await app.StartAsync();
        var url = new Uri(app.Urls.Single());
        Assert.AreNotEqual(0, url.Port, "Kestrel bound an ephemeral port");
        using var deadline = new CancellationTokenSource(ReadyDeadline);
        await HostSetup.WaitHealthyAsync(Http, url, deadline.Token);
        return url;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var app in Enumerable.Reverse(_apps))
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }

        Http.Dispose();
        if (Node is not null)
        {
            await Node.DisposeAsync();
        }
    }
}
