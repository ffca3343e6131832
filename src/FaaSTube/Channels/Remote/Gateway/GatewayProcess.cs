using Microsoft.Extensions.Logging;

namespace FaaSTube.Channels.Remote.Gateway;

/// <summary>
/// The network gateway's main loop (the FaaSTube.Gateway program): reads its
/// <see cref="GatewayConfig"/> line, listens (<see cref="RemoteListener"/>, the same code a node runs
/// in process), prints <c>listening HOST:PORT</c> (or <c>failed MESSAGE</c> and exits 1), then serves
/// until its input ends: it stops accepting, closes every session by force (each one's local
/// connection closes, so the node gives back what it held) and exits 0.
/// </summary>
internal static partial class GatewayProcess
{
    /// <summary>The longest the gateway waits for its sessions to end once told to stop.</summary>
    private static readonly TimeSpan StopDrain = TimeSpan.FromSeconds(10);

    public static async Task<int> RunAsync(TextReader input, TextWriter output, ILoggerFactory loggers)
    {
        var logger = loggers.CreateLogger("FaaSTube.Gateway");
        GatewayConfig config;
        try
        {
            config = GatewayConfig.FromJson(await input.ReadLineAsync().ConfigureAwait(false) ?? throw new InvalidDataException("No configuration line: the node closed the gateway's input."));
        }
        catch (Exception e) when (e is InvalidDataException or System.Text.Json.JsonException or NotSupportedException)
        {
            await SayAsync(output, $"failed {e.Message}").ConfigureAwait(false);
            return 1;
        }

        using var stop = new CancellationTokenSource();
        var host = new GatewayHost(config, logger);
        RemoteListener listener;
        try
        {
            listener = await RemoteListener.StartAsync(host, config.Listen, stop.Token).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await SayAsync(output, $"failed {e.GetType().Name}: {e.Message}".ReplaceLineEndings(" ")).ConfigureAwait(false);
            return 1;
        }

        await SayAsync(output, $"listening {listener.EndPoint}").ConfigureAwait(false);
        LogListening(logger, listener.EndPoint.ToString(), Environment.ProcessId);
        while (await input.ReadLineAsync().ConfigureAwait(false) is not null)
        {
            // Nothing else is said on the input; its end is the order to stop.
        }

        await stop.CancelAsync().ConfigureAwait(false); // every session closes by force (RemoteSession registers on it)
        await listener.StopAcceptingAsync().ConfigureAwait(false);
        var drained = await listener.WhenNoSessionsAsync(StopDrain).ConfigureAwait(false);
        listener.Dispose();
        LogStopped(logger, drained);
        return 0;
    }

    private static async Task SayAsync(TextWriter output, string line)
    {
        await output.WriteLineAsync(line).ConfigureAwait(false);
        await output.FlushAsync().ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Network gateway listening on {EndPoint} (pid {Pid})")]
    private static partial void LogListening(ILogger logger, string endPoint, int pid);

    [LoggerMessage(Level = LogLevel.Information, Message = "Network gateway stopped (every session ended in time: {Drained})")]
    private static partial void LogStopped(ILogger logger, bool drained);
}
