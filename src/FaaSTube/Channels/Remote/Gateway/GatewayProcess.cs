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
        // A session's end joins its worker's progress thread on the pool (up to the worker's 2 s drain): a process
        // that starts with as many pool threads as cores would make every other session wait behind a few of those.
        ThreadPool.GetMinThreads(out int workers, out int completions);
        ThreadPool.SetMinThreads(Math.Max(workers, 16), completions);
        // It holds the gateway key, every workflow's remote secret and the remote clients' windows, and it is the process
        // expected to crash: no core file of it, and no other process of the user may read its memory (ptrace).
        if (OperatingSystem.IsLinux() && Native.Interop.Libc.prctl(Native.Interop.Libc.PR_SET_DUMPABLE, 0) != 0)
        {
            LogNotHidden(logger, System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
        }

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

        if (GatewayMemory.Apply(config.MemoryLimit, logger) is { } unbounded) // before UCX is loaded: its allocations are bounded from the first
        {
            await SayAsync(output, $"failed {unbounded}").ConfigureAwait(false);
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
        var saying = new SemaphoreSlim(1, 1); // one line at a time on the output
        var fetches = new GatewayFetches(host, config, async line =>
        {
            await saying.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                await SayAsync(output, line).ConfigureAwait(false);
            }
            finally
            {
                saying.Release();
            }
        }, stop.Token);
        await InputEndedAsync(input, fetches.Take).ConfigureAwait(false); // the node's fetches come on the input; its end is the order to stop

        await stop.CancelAsync().ConfigureAwait(false); // every session closes by force (RemoteSession registers on it)
        await fetches.DisposeAsync().ConfigureAwait(false); // and every kept link to a peer
        await listener.StopAcceptingAsync().ConfigureAwait(false);
        var drained = await listener.WhenNoSessionsAsync(StopDrain).ConfigureAwait(false);
        listener.Dispose();
        LogStopped(logger, drained);
        return 0;
    }

    /// <summary>
    /// Completes when the input ends. Read on a thread of its own: Console.In reads block, and a
    /// pool thread held for the gateway's whole life slowed every session's start under load (their
    /// challenges were late past the clients' call timeout).
    /// </summary>
    private static Task InputEndedAsync(TextReader input, Action<string> take)
    {
        var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reader = new Thread(() =>
        {
            try
            {
                while (input.ReadLine() is { } line)
                {
                    take(line);
                }
            }
            catch (IOException)
            {
                // The input broke: the node is gone, so is the order.
            }

            ended.TrySetResult();
        }) { IsBackground = true, Name = "faastube-gateway-input" };
        reader.Start();
        return ended.Task;
    }

    private static async Task SayAsync(TextWriter output, string line)
    {
        await output.WriteLineAsync(line).ConfigureAwait(false);
        await output.FlushAsync().ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Network gateway listening on {EndPoint} (pid {Pid})")]
    private static partial void LogListening(ILogger logger, string endPoint, int pid);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Network gateway: prctl(PR_SET_DUMPABLE, 0) failed (errno {Errno}): a crash may leave a core file holding its secrets")]
    private static partial void LogNotHidden(ILogger logger, int errno);

    [LoggerMessage(Level = LogLevel.Information, Message = "Network gateway stopped (every session ended in time: {Drained})")]
    private static partial void LogStopped(ILogger logger, bool drained);
}
