using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace FaaSTube.Tests.Hosting;

/// <summary>Generic hosts for the hosting tests: configuration in memory (no files, no environment), small simulated GPUs.</summary>
internal static class HostingHarness
{
    public static string NewSocket() => Path.Combine(Path.GetTempPath(), $"ft-{Guid.NewGuid():N}"[..20] + ".sock");

    /// <summary>The node's settings a test starts from: a private socket, a small simulated GPU, small slabs and staging.</summary>
    public static Dictionary<string, string?> NodeSettings(string socket) => new()
    {
        ["FaaSTube:Node:SocketPath"] = socket,
        ["FaaSTube:Node:Gpus:Backend"] = "Simulated",
        ["FaaSTube:Node:Gpus:SimulatedMemoryBytes"] = (1L << 30).ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["FaaSTube:Node:Pool:SlabBytes"] = (16 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["FaaSTube:Node:Pool:FloorBytes"] = "0",
        ["FaaSTube:Node:Transfers:StagingBytes"] = (8 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["FaaSTube:Node:Transfers:ChunkBytes"] = (1 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>The client's settings a test starts from.</summary>
    public static Dictionary<string, string?> ClientSettings(string socket) => new()
    {
        ["FaaSTube:Client:SocketPath"] = socket,
        ["FaaSTube:Client:Workflow"] = "wf",
        ["FaaSTube:Client:Function"] = "f",
        ["FaaSTube:Client:WindowBytes"] = (1 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["FaaSTube:Client:Gpus:Backend"] = "Simulated",
    };

    public static IHost Build(IDictionary<string, string?> settings, Action<IServiceCollection> services)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(settings);
        services(builder.Services);
        return builder.Build();
    }

    public static IHost NodeHost(string socket, params (string Key, string Value)[] overrides)
    {
        var settings = NodeSettings(socket);
        foreach (var (key, value) in overrides)
        {
            settings[key] = value;
        }

        return Build(settings, s => s.AddFaaSTubeNode());
    }

    public static async Task<IHost> StartNodeHostAsync(string socket)
    {
        var host = NodeHost(socket);
        await host.StartAsync();
        return host;
    }

    public static TubeClientOptions ClientOptions(string socket) => new()
    {
        SocketPath = socket,
        Workflow = "wf",
        WindowBytes = 1 << 20,
        Gpus = new GpuSystemOptions { Backend = GpuBackend.Simulated },
    };
}
