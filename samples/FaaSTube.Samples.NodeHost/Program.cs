// A FaaSTube node as a process of its own: for function runtimes that do not embed the node.
//   dotnet run --project samples/FaaSTube.Samples.NodeHost -- [--socket PATH] [--backend auto|cuda|simulated] [--topology h100|dgx1|dgx-a100]
// Runs until Ctrl+C (or SIGTERM); clients connect with TubeClient.ConnectAsync.
using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Topology;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;

var options = new TubeNodeOptions();
for (int i = 0; i + 1 < args.Length; i += 2)
{
    switch (args[i])
    {
        case "--socket": options.SocketPath = args[i + 1]; break;
        case "--backend": options.Gpus.Backend = Enum.Parse<GpuBackend>(args[i + 1], ignoreCase: true); break;
        case "--topology": options.Gpus.SimulatedTopology = GpuTopology.FromName(args[i + 1]); break;
        default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
    }
}

using var logging = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true));
options.LoggerFactory = logging;
options.Gpus.LoggerFactory = logging;
await using var node = await TubeNode.StartAsync(options);
Console.WriteLine($"FaaSTube node on {node.SocketPath}: {node.Gpus.Devices.Count} {node.Gpus.Backend} GPU(s). Ctrl+C to stop.");

// SIGINT and SIGTERM stop the node in order (clients told, slabs freed, socket removed) before the
// process exits: the default handling would exit as soon as the handlers return, leaving both behind.
var stop = new TaskCompletionSource();
void Stop(PosixSignalContext context)
{
    context.Cancel = true;
    stop.TrySetResult();
}

using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
await stop.Task;
Console.WriteLine("Stopping the node.");
return 0;
