// FaaSTube function host sample: the traffic workflow's stages as HTTP functions on ASP.NET Core,
// in the shape FaaS platforms run functions (OpenFaaS's HTTP watchdog, Knative's container
// contract): one function per process, listening on $PORT, GET /_/health, POST / to invoke.
// Requests and answers carry tube ids (JSON), never tensors: the data stays on the GPU, in the
// node's pool, and each function gets its FaaSTube client by dependency injection (AddFaaSTubeClient).
//   dotnet run --project samples/FaaSTube.Samples.FunctionHost -c Release -- --all [--requests N] [--fanout K] [--seed S]
//     a node, a process per function, a gateway; N requests through the gateway; latency and checksums
//   ... -- --function preprocess|detect|classify     one function (PORT, FaaSTube__Client__SocketPath, ...)
//   ... -- --gateway                                   the gateway (Gateway__Preprocess=URL, Gateway__Classify__0=URL, ...)
using FaaSTube.Samples.FunctionHost.Functions;
using FaaSTube.Samples.FunctionHost.Gateway;
using FaaSTube.Samples.FunctionHost.Hosting;
using FaaSTube.Samples.FunctionHost.Launcher;
using FaaSTube.Samples.Traffic;

try
{
    int function = Array.IndexOf(args, "--function");
    if (function >= 0)
    {
        string name = function + 1 < args.Length ? args[function + 1] : "";
        var stage = name is "preprocess" or "detect" or "classify"
            ? Stage.ByName(name)
            : throw new ArgumentException($"--function: '{name}' is not preprocess, detect or classify.\n{LaunchOptions.Usage}");
        return await HostSetup.RunAsync(FunctionApp.Create(args.Where((_, i) => i != function && i != function + 1).ToArray(), stage), args);
    }

    if (args.Contains("--gateway"))
    {
        return await HostSetup.RunAsync(GatewayApp.Create(args.Where(a => a != "--gateway").ToArray()), args);
    }

    if (args.Contains("--all"))
    {
        return await TrafficRun.RunAsync(LaunchOptions.Parse(args));
    }

    Console.Error.WriteLine(LaunchOptions.Usage);
    return 2;
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}
