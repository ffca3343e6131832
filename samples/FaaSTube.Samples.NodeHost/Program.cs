// A FaaSTube node as a process of its own, on the .NET Generic Host: for function runtimes that do
// not embed the node. The same host as `faastube node` (src/FaaSTube.Cli/Node/NodeHostBuilder.cs,
// compiled into this sample too). Settings come from appsettings.json, then FAASTUBE__NODE__...
// environment variables, then the command line:
//   dotnet run --project samples/FaaSTube.Samples.NodeHost -- [--socket PATH] [--backend auto|cuda|simulated] [--topology h100|dgx1|dgx-a100]
//   dotnet run --project samples/FaaSTube.Samples.NodeHost -- --FaaSTube:Node:Pool:SlabBytes=134217728
// Metrics and traces (the "FaaSTube" meter and activity source) go to the OpenTelemetry SDK: to the
// OTLP exporter when OTEL_EXPORTER_OTLP_ENDPOINT (or FaaSTube:Telemetry:OtlpEndpoint, --otlp URL) is
// set, else to the console.
// Runs until Ctrl+C or SIGTERM, then stops the node gracefully (calls in flight finish, clients are
// told, slabs freed, socket removed); clients connect with TubeClient.ConnectAsync or AddFaaSTubeClient.
using FaaSTube.Cli.Node;

using var host = NodeHostBuilder.Create(args, consoleTelemetry: true).Build();
await NodeHostBuilder.RunAsync(host, Console.Out);
return 0;
