using FaaSTube.Channels;
using FaaSTube.Samples.Traffic;

namespace FaaSTube.Samples.FunctionHost.Launcher;

/// <summary>
/// A FaaS platform on this machine, on loopback: a FaaSTube node (in this process), one process per
/// function (preprocess, detect, and a classify per classifier) and one for the gateway, each a
/// <see cref="HostProcess"/> that reaches the node through its socket as a real client.
/// </summary>
internal sealed class LocalPlatform : IAsyncDisposable
{
    private static readonly TimeSpan ReadyDeadline = TimeSpan.FromSeconds(90);
    private readonly TubeNode _node;
    private readonly List<HostProcess> _hosts;

    private LocalPlatform(TubeNode node, List<HostProcess> hosts, HostProcess gateway)
    {
        _node = node;
        _hosts = hosts;
        Gateway = gateway;
    }

    /// <summary>The node.</summary>
    public TubeNode Node => _node;

    /// <summary>The gateway's process.</summary>
    public HostProcess Gateway { get; }

    public static async Task<LocalPlatform> StartAsync(LaunchOptions options, HttpClient http)
    {
        var node = await TubeNode.StartAsync(new TubeNodeOptions
        {
            SocketPath = Path.Combine(Path.GetTempPath(), $"faastube-functionhost-{Environment.ProcessId}.sock"),
            Gpus = new Devices.GpuSystemOptions { Backend = options.Backend },
            Pool = new Memory.GpuPoolOptions { SlabBytes = 256L << 20 },
        });
        var hosts = new List<HostProcess>();
        try
        {
            var client = new Dictionary<string, string>
            {
                ["FaaSTube__Client__SocketPath"] = node.SocketPath!,
                ["FaaSTube__Client__Gpus__Backend"] = node.Gpus.Backend.ToString(),
                ["Logging__LogLevel__Default"] = "Warning",
            };
            var starting = new[] { ("preprocess", Stage.Preprocess), ("detect", Stage.Detect) }
                .Concat(Enumerable.Range(0, options.FanOut).Select(k => ($"classify[{k}]", Stage.Classify)))
                .Select(f => HostProcess.StartAsync(f.Item1, ["--function", f.Item2.Name], client, http, ReadyDeadline))
                .ToArray();
            try
            {
                await Task.WhenAll(starting);
            }
            finally
            {
                hosts.AddRange(starting.Where(t => t.IsCompletedSuccessfully).Select(t => t.Result)); // stopped below if another failed
            }

            var functions = hosts.ToArray();
            var gatewayEnvironment = new Dictionary<string, string>(client)
            {
                ["Gateway__Preprocess"] = functions[0].Url.ToString(),
                ["Gateway__Detect"] = functions[1].Url.ToString(),
            };
            for (int k = 0; k < options.FanOut; k++)
            {
                gatewayEnvironment[$"Gateway__Classify__{k}"] = functions[2 + k].Url.ToString();
            }

            var gateway = await HostProcess.StartAsync("gateway", ["--gateway"], gatewayEnvironment, http, ReadyDeadline);
            hosts.Add(gateway);
            return new LocalPlatform(node, hosts, gateway);
        }
        catch
        {
            foreach (var host in hosts)
            {
                await host.DisposeAsync();
            }

            await node.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var host in Enumerable.Reverse(_hosts))
        {
            await host.DisposeAsync();
        }

        await _node.DisposeAsync();
    }
}
