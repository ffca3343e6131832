// A FaaSTube node as a process of its own, on the .NET Generic Host: for function runtimes that do
// not embed the node. Settings come from appsettings.json, then FAASTUBE__NODE__... environment
// variables, then the command line:
//   dotnet run --project samples/FaaSTube.Samples.NodeHost -- [--socket PATH] [--backend auto|cuda|simulated] [--topology h100|dgx1|dgx-a100]
//   dotnet run --project samples/FaaSTube.Samples.NodeHost -- --FaaSTube:Node:Pool:SlabBytes=134217728
// Metrics and traces (the "FaaSTube" meter and activity source) go to the OpenTelemetry SDK: to the
// OTLP exporter when OTEL_EXPORTER_OTLP_ENDPOINT (or FaaSTube:Telemetry:OtlpEndpoint, --otlp URL) is
// set, else to the console.
// Runs until Ctrl+C or SIGTERM, then stops the node gracefully (calls in flight finish, clients are
// told, slabs freed, socket removed); clients connect with TubeClient.ConnectAsync or AddFaaSTubeClient.
using FaaSTube;
using FaaSTube.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
{
    Args = args,
    ContentRootPath = AppContext.BaseDirectory, // appsettings.json beside the program, wherever it is started from
});

// The short switches of earlier versions map onto configuration keys (command line wins).
builder.Configuration.AddCommandLine(args, new Dictionary<string, string>
{
    ["--socket"] = "FaaSTube:Node:SocketPath",
    ["--backend"] = "FaaSTube:Node:Gpus:Backend",
    ["--topology"] = "FaaSTube:Node:Gpus:SimulatedTopology",
    ["--otlp"] = "FaaSTube:Telemetry:OtlpEndpoint",
});
builder.Logging.AddSimpleConsole(o => o.SingleLine = true);

builder.Services.AddFaaSTubeNode();

string? otlp = builder.Configuration["FaaSTube:Telemetry:OtlpEndpoint"] ?? builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"];
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

using var host = builder.Build();
await host.StartAsync();
var node = host.Services.GetRequiredService<TubeNodeHostedService>().Node;
Console.WriteLine($"FaaSTube node on {node.SocketPath}: {node.Gpus.Devices.Count} {node.Gpus.Backend} GPU(s). Ctrl+C to stop.");
await host.WaitForShutdownAsync(); // SIGINT / SIGTERM: the host stops the node (TubeNode.StopAsync) before returning
Console.WriteLine("Stopped the node.");
return 0;
