// The network gateway (src/FaaSTube/Channels/Remote/Gateway/GatewayProcess.cs): started by a node
// whose TubeNodeOptions.NetworkIsolation is Process; its configuration comes as one line on standard
// input, its answer ("listening HOST:PORT" or "failed MESSAGE") on standard output, its log on
// standard error. It is not meant to be run by hand.
using FaaSTube.Channels.Remote.Gateway;
using FaaSTube.Gateway;
using Microsoft.Extensions.Logging;

using var loggers = new StandardErrorLoggerFactory(TextWriter.Synchronized(Console.Error), LogLevel.Information);
return await GatewayProcess.RunAsync(Console.In, Console.Out, loggers);
