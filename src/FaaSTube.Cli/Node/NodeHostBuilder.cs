using FaaSTube.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace FaaSTube.Cli.Node;

/// <summary>
/// A FaaSTube node on the .NET Generic Host: what <c>faastube node</c> runs, and the NodeHost sample
/// (samples/FaaSTube.Samples.NodeHost compiles this file too). Settings come from appsettings.json
/// beside the program, then <c>FAASTUBE__NODE__...</c> environment variables, then the command line
/// (<c>--FaaSTube:Node:Pool:SlabBytes=134217728</c>, or the short switches of <see cref="Switches"/>).
/// Metrics and traces go to the OpenTelemetry SDK: to OTLP when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> or
/// <c>FaaSTube:Telemetry:OtlpEndpoint</c> is set, else to the console when asked.
/// </summary>
internal static class NodeHostBuilder
{
    /// <summary>The short switches and the configuration keys they set.</summary>
    public static readonly IReadOnlyDictionary<string, string> Switches = new Dictionary<string, string>
    {
        ["--socket"] = "FaaSTube:Node:SocketPath",
        ["--backend"] = "FaaSTube:Node:Gpus:Backend",
        ["--topology"] = "FaaSTube:Node:Gpus:SimulatedTopology",
        ["--otlp"] = "FaaSTube:Telemetry:OtlpEndpoint",
    };

    /// <summary>The host's builder: configuration, console logging, the node (<c>AddFaaSTubeNode</c>) and telemetry.</summary>
    /// <param name="args">Configuration arguments (<c>--key=value</c>, <c>--key value</c>, or a switch of <see cref="Switches"/>).</param>
    /// <param name="consoleTelemetry">Without an OTLP endpoint, whether metrics and traces are printed on the console.</param>
    public static HostApplicationBuilder Create(string[] args, bool consoleTelemetry)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
        {
            Args = [],
            ContentRootPath = AppContext.BaseDirectory, // appsettings.json beside the program, wherever it is started from
        });

        // The command line wins over appsettings.json and the environment.
        builder.Configuration.AddCommandLine(args, new Dictionary<string, string>(Switches));
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.Services.AddFaaSTubeNode();

        string? otlp = builder.Configuration["FaaSTube:Telemetry:OtlpEndpoint"] ?? builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"];
        if (otlp is null && !consoleTelemetry)
        {
            return builder;
        }

        builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("faastube-node"))
            .WithMetrics(metrics =>
            {
                metrics.AddMeter(Telemetry.Name);
                if (otlp is not null)
                {
                    metrics.AddOtlpExporter(o => o.Endpoint = new Uri(otlp));
                }
                else
                {
                    metrics.AddConsoleExporter();
                }
            })
            .WithTracing(tracing =>
            {
                tracing.AddSource(Telemetry.Name);
                if (otlp is not null)
                {
                    tracing.AddOtlpExporter(o => o.Endpoint = new Uri(otlp));
                }
                else
                {
                    tracing.AddConsoleExporter();
                }
            });
        return builder;
    }

    /// <summary>
    /// Runs the host until SIGINT or SIGTERM (the host's console lifetime), then stops the node
    /// gracefully (calls in flight finish, clients are told, slabs freed, socket removed).
    /// </summary>
    /// <param name="host">The built host.</param>
    /// <param name="output">Where the start and stop lines go.</param>
    /// <param name="cancellationToken">Stops the node as a signal would.</param>
    public static async Task RunAsync(IHost host, TextWriter output, CancellationToken cancellationToken = default)
    {
        await host.StartAsync(cancellationToken).ConfigureAwait(false);
        var node = host.Services.GetRequiredService<TubeNodeHostedService>().Node;
        await output.WriteLineAsync($"FaaSTube node on {node.SocketPath}: {node.Gpus.Devices.Count} {node.Gpus.Backend} GPU(s). Ctrl+C to stop.").ConfigureAwait(false);
        await host.WaitForShutdownAsync(cancellationToken).ConfigureAwait(false); // the host stops the node (TubeNode.StopAsync) before returning
        await output.WriteLineAsync("Stopped the node.").ConfigureAwait(false);
    }
}
