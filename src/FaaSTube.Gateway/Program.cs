// The network gateway (src/FaaSTube/Channels/Remote/Gateway/GatewayProcess.cs): started by a node
// whose TubeNodeOptions.NetworkIsolation is Process; its configuration comes as one line on standard
// input, its answer ("listening HOST:PORT" or "failed MESSAGE") on standard output, its log on
// standard error. It is not meant to be run by hand.
using FaaSTube.Channels.Remote.Gateway;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

using var loggers = LoggerFactory.Create(logging =>
{
    logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; }).AddFilter(level => level >= LogLevel.Information);
    logging.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace); // standard output carries only the gateway's answer
});
return await GatewayProcess.RunAsync(Console.In, Console.Out, loggers);
