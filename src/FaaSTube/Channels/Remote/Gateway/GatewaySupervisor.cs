using System.Diagnostics;
using System.Net;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;

namespace FaaSTube.Channels.Remote.Gateway;

/// <summary>
/// In the node (<see cref="NetworkIsolation.Process"/>): starts the network gateway
/// (FaaSTube.Gateway.dll, next to FaaSTube.dll, run by the same .NET host), tells it its
/// <see cref="GatewayConfig"/> on its input, and waits for <c>listening HOST:PORT</c>. If it exits
/// while the node runs (UCX aborted it, or someone killed it), its remote sessions are gone with it
/// (their local connections closed, so the node gave back what they held) and it is started again,
/// after a pause that doubles up to 5 s while it keeps dying, on the same address. Its output is the
/// node's log. Stopping closes its input (it ends its sessions and exits), then kills it after 15 s.
/// </summary>
internal sealed partial class GatewaySupervisor : IAsyncDisposable
{
    /// <summary>The program the node runs, next to FaaSTube.dll.</summary>
    public const string ProgramFile = "FaaSTube.Gateway.dll";

    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);

    /// <summary>The longest line of the gateway's log the node keeps (the rest is cut: <see cref="BoundedLineReader"/>).</summary>
    private const int MaxLogLine = 16 << 10;
    private static readonly TimeSpan StopPatience = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(5);

    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Queue<string> _lastLines = new();
    private readonly GatewayOutputLimit _outputLimit = new();
    private readonly Lock _sync = new(); // _process and _disposal
    private GatewayConfig _config;
    private Process? _process;
    private Task _watch = Task.CompletedTask;
    private int _restarts;
    private Task? _disposal;

    private GatewaySupervisor(GatewayConfig config, ILogger logger)
    {
        _config = config;
        _logger = logger;
    }

    /// <summary>Where the gateway listens (the port it bound when 0 was asked; restarts keep it).</summary>
    public IPEndPoint EndPoint { get; private set; } = new(IPAddress.None, 0);

    /// <summary>How many times the gateway was started again after it died.</summary>
    public int Restarts => Volatile.Read(ref _restarts);

    /// <summary>The running gateway's process id (0 between a death and the restart).</summary>
    public int ProcessId
    {
        get
        {
            lock (_sync)
            {
                try
                {
                    return _process is { HasExited: false } p ? p.Id : 0;
                }
                catch (InvalidOperationException)
                {
                    return 0; // disposed
                }
            }
        }
    }

    /// <summary>Starts the gateway and waits until it listens; its failure to start is thrown (with what it said).</summary>
    public static async Task<GatewaySupervisor> StartAsync(TubeNode node, string listen, byte[] key, CancellationToken cancellationToken)
    {
        var supervisor = new GatewaySupervisor(GatewayConfig.From(node.Settings, listen, key), node.Logger);
        try
        {
            await supervisor.LaunchAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await supervisor.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        supervisor._watch = Task.Run(supervisor.WatchAsync, CancellationToken.None);
        return supervisor;
    }

    private async Task LaunchAsync(CancellationToken cancellationToken)
    {
        string program = FindProgram();

        var info = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(program);
        info.Environment["UCX_LOG_FILE"] = info.Environment.TryGetValue("UCX_LOG_FILE", out var file) && file is { Length: > 0 } ? file : "/dev/stderr"; // UCX's own messages beside the gateway's log, not in its answers
        Process process;
        try
        {
            process = Process.Start(info) ?? throw new InvalidOperationException("The network gateway did not start.");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"The network gateway runs on the .NET host ({info.FileName}), which could not be started ({e.Message}): a self-contained application needs the .NET runtime installed for it, or TubeNodeOptions.NetworkIsolation set to InProcess.", e);
        }

        try
        {
            _ = PumpAsync(process.StandardError);
            await process.StandardInput.WriteLineAsync(_config.ToJson()).ConfigureAwait(false);
            await process.StandardInput.FlushAsync(cancellationToken).ConfigureAwait(false);
            var output = new BoundedLineReader(process.StandardOutput, MaxLogLine);
            var at = await ReadListeningAsync(output, process, cancellationToken).ConfigureAwait(false);
            _ = HearAsync(output, process.Id); // its log, and the answers to fetches (GatewaySupervisor.Fetches.cs)
            EndPoint = at;
            _config = _config with { Listen = at.ToString() }; // a restart binds the same port
            lock (_sync)
            {
                if (_stop.IsCancellationRequested)
                {
                    throw new OperationCanceledException(_stop.Token); // the node stops: this one is not kept
                }

                _process = process;
            }

            LogStarted(_logger, process.Id, at.ToString());
        }
        catch
        {
            await KillAsync(process).ConfigureAwait(false); // a start that failed or was cancelled leaves no gateway behind
            process.Dispose();
            throw;
        }
    }

    /// <summary>The gateway's answer: skips UCX's and other lines until <c>listening HOST:PORT</c> (or a failure).</summary>
    private async Task<IPEndPoint> ReadListeningAsync(BoundedLineReader output, Process process, CancellationToken cancellationToken)
    {
        using var patience = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        patience.CancelAfter(StartTimeout);
        string? line;
        try
        {
            while ((line = await output.ReadLineAsync(patience.Token).ConfigureAwait(false)) is not null
                && !line.StartsWith("listening ", StringComparison.Ordinal) && !line.StartsWith("failed ", StringComparison.Ordinal))
            {
                Said(line);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new InvalidOperationException($"The network gateway did not say it listens within {StartTimeout.TotalSeconds:0} s. Its last lines: {string.Join(" | ", LastLines())}");
        }

        if (line is not null && line.StartsWith("listening ", StringComparison.Ordinal) && IPEndPoint.TryParse(line["listening ".Length..], out var at))
        {
            return at;
        }

        await process.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        string said = line ?? $"it exited{(process.HasExited ? $" with code {process.ExitCode}" : "")} without a word";
        throw new InvalidOperationException($"The network gateway did not start: {said}. Its last lines: {string.Join(" | ", LastLines())}");
    }

    /// <summary>The gateway program: beside the application (where the FaaSTube package copies it), else beside FaaSTube.dll (a plugin's folder).</summary>
    private static string FindProgram()
    {
#pragma warning disable IL3000 // Assembly.Location is empty in a single-file app: then only the application's folder is looked at
        string? library = Path.GetDirectoryName(typeof(GatewaySupervisor).Assembly.Location);
#pragma warning restore IL3000
        string[] folders = string.IsNullOrEmpty(library) ? [AppContext.BaseDirectory] : [AppContext.BaseDirectory, library];
        return folders.Select(f => Path.Combine(f, ProgramFile)).FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException($"The network gateway ({ProgramFile}) is neither beside the application nor beside FaaSTube.dll ({string.Join(", ", folders)}): the FaaSTube package copies it into the build and publish output (a project reference needs a reference to src/FaaSTube.Gateway too); or set TubeNodeOptions.NetworkIsolation to InProcess.");
    }

    /// <summary>While the node runs: a gateway that exits is started again (after a pause that grows while it keeps dying).</summary>
    private async Task WatchAsync()
    {
        var backoff = TimeSpan.FromMilliseconds(200);
        while (!_stop.IsCancellationRequested && _process is { } process)
        {
            var started = Stopwatch.StartNew();
            await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            if (_stop.IsCancellationRequested)
            {
                return;
            }

            Interlocked.Increment(ref _restarts);
            LogDied(_logger, process.Id, process.ExitCode, string.Join(" | ", LastLines()));
            lock (_sync)
            {
                _process = null;
            }

            process.Dispose();
            backoff = started.Elapsed > TimeSpan.FromMinutes(1) ? TimeSpan.FromMilliseconds(200) : backoff;
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(backoff, _stop.Token).ConfigureAwait(false); // a pause before the next try, not a wait for anything
                    await LaunchAsync(_stop.Token).ConfigureAwait(false);
                    break;
                }
                catch (OperationCanceledException) when (_stop.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e)
                {
                    LogRestartFailed(_logger, e);
                }
                finally
                {
                    backoff = backoff * 2 > MaxBackoff ? MaxBackoff : backoff * 2;
                }
            }
        }
    }

    /// <summary>Closes the gateway's input (it ends its sessions and exits), kills it if it has not exited after 15 s.</summary>
    public ValueTask DisposeAsync()
    {
        lock (_sync)
        {
            _disposal ??= StopAsync(); // once; a second caller waits for the same stop
            return new ValueTask(_disposal);
        }
    }

    private async Task StopAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false); // a restart in progress gives up; the watch returns once the gateway has exited
        Process? process;
        lock (_sync)
        {
            process = _process;
        }

        if (process is not null)
        {
            try
            {
                process.StandardInput.Close();
                await process.WaitForExitAsync(CancellationToken.None).WaitAsync(StopPatience).ConfigureAwait(false);
            }
            catch (Exception e) when (e is TimeoutException or IOException or InvalidOperationException)
            {
                await KillAsync(process).ConfigureAwait(false);
            }
        }

        await _watch.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        process?.Dispose();
        _outputLimit.Dispose();
    }

    private static async Task KillAsync(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync(CancellationToken.None).WaitAsync(StopPatience).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException or System.ComponentModel.Win32Exception)
        {
            // Gone already, or not ours to wait for any more.
        }
    }

    /// <summary>Each line the gateway writes (its log, UCX's messages) goes to the node's log; the last ones are kept for a failure's message.</summary>
    private async Task PumpAsync(StreamReader reader)
    {
        var lines = new BoundedLineReader(reader, MaxLogLine);
        try
        {
            while (await lines.ReadLineAsync().ConfigureAwait(false) is { } line)
            {
                Said(line);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
        }
    }

    private void Said(string line)
    {
        lock (_lastLines)
        {
            _lastLines.Enqueue(line);
            while (_lastLines.Count > 20)
            {
                _lastLines.Dequeue();
            }
        }

        if (!_outputLimit.Take(out long dropped))
        {
            return; // kept for a failure's message above, not logged
        }

        if (dropped > 0)
        {
            LogOutputDropped(_logger, dropped, GatewayOutputLimit.LinesPerSecond);
        }

        // The gateway's own entries say their level ("HH:mm:ss.fff warn ..."); UCX's say "UCX  ERROR" or "UCX  WARN".
        var level = line.Contains(" fail ", StringComparison.Ordinal) || line.Contains(" crit ", StringComparison.Ordinal) ? LogLevel.Error
            : line.Contains(" warn ", StringComparison.Ordinal) || line.Contains("UCX  ERROR", StringComparison.Ordinal) || line.Contains("UCX  WARN", StringComparison.Ordinal) ? LogLevel.Warning
            : LogLevel.Information;
        LogOutput(_logger, level, line);
    }

    private string[] LastLines()
    {
        lock (_lastLines)
        {
            return [.. _lastLines];
        }
    }

    /// <summary>The .NET host running this process (the gateway is framework-dependent like the node): dotnet itself, the SDK's, or the one beside the runtime.</summary>
    private static string DotnetHost()
    {
        if (Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            return self;
        }

        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } sdk && File.Exists(sdk))
        {
            return sdk;
        }

        string beside = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", "..", "dotnet"));
        return File.Exists(beside) ? beside : "dotnet";
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Network gateway started (pid {Pid}), listening on {EndPoint}")]
    private static partial void LogStarted(ILogger logger, int pid, string endPoint);

    [LoggerMessage(Level = LogLevel.Error, Message = "Network gateway (pid {Pid}) exited with code {ExitCode} while the node runs; its remote sessions ended with it; starting it again. Its last lines: {LastLines}")]
    private static partial void LogDied(ILogger logger, int pid, int exitCode, string lastLines);

    [LoggerMessage(Level = LogLevel.Error, Message = "Network gateway could not be started again; trying after a pause")]
    private static partial void LogRestartFailed(ILogger logger, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Network gateway: {Dropped} of its lines were not logged (more than {PerSecond} a second: a peer can make UCX report each fragment it cannot take)")]
    private static partial void LogOutputDropped(ILogger logger, long dropped, int perSecond);

    [LoggerMessage(Message = "Network gateway: {Line}")]
    private static partial void LogOutput(ILogger logger, LogLevel level, string line);
}
