using System.Diagnostics;
using FaaSTube.Samples.FunctionHost.Hosting;

namespace FaaSTube.Samples.FunctionHost.Launcher;

/// <summary>
/// One host (a function or the gateway) in a process of its own, this same program started with
/// its role's switch, as a platform starts a function's container: PORT=0 in its environment, ready
/// when it has written its ready line (with the port it got) and its health endpoint answers 200;
/// stopped by closing its standard input (graceful), killed if it does not stop in time.
/// </summary>
internal sealed class HostProcess : IAsyncDisposable
{
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(15);
    private readonly Process _process;
    private readonly Task _drain;

    private HostProcess(string name, Process process, Uri url, Task drain)
    {
        Name = name;
        Url = url;
        _process = process;
        _drain = drain;
    }

    /// <summary>The host's name in messages.</summary>
    public string Name { get; }

    /// <summary>Where it listens.</summary>
    public Uri Url { get; }

    /// <summary>Starts the host and waits, until <paramref name="deadline"/>, for it to be ready.</summary>
    public static async Task<HostProcess> StartAsync(string name, IEnumerable<string> args, IReadOnlyDictionary<string, string> environment, HttpClient http, TimeSpan deadline)
    {
        var self = Environment.ProcessPath!;
        var info = new ProcessStartInfo(self) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            info.ArgumentList.Add(typeof(HostProcess).Assembly.Location);
        }

        foreach (var arg in args.Append(HostSetup.StopWithStdin))
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["PORT"] = "0";
        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException($"{name} did not start.");
        using var timeout = new CancellationTokenSource(deadline);
        try
        {
            var url = await ReadyAsync(name, process, timeout.Token);
            var drain = DrainAsync(name, process); // its log, prefixed, on our standard error
            await HostSetup.WaitHealthyAsync(http, url, timeout.Token);
            return new HostProcess(name, process, url, drain);
        }
        catch (Exception e)
        {
            process.Kill(entireProcessTree: true);
            process.Dispose();
            throw e is OperationCanceledException
                ? new TimeoutException($"{name} was not ready within {deadline.TotalSeconds:F0} s.", e)
                : e;
        }
    }

    private static async Task<Uri> ReadyAsync(string name, Process process, CancellationToken cancellationToken)
    {
        while (await process.StandardOutput.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.StartsWith(HostSetup.ReadyLine, StringComparison.Ordinal))
            {
                return new Uri(line[HostSetup.ReadyLine.Length..]);
            }

            await Console.Error.WriteLineAsync($"[{name}] {line}");
        }

        throw new InvalidOperationException($"{name} exited before it was ready (exit code {(process.WaitForExit(5000) ? process.ExitCode.ToString(System.Globalization.CultureInfo.InvariantCulture) : "?")}).");
    }

    private static async Task DrainAsync(string name, Process process)
    {
        while (await process.StandardOutput.ReadLineAsync() is { } line)
        {
            await Console.Error.WriteLineAsync($"[{name}] {line}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            _process.StandardInput.Close(); // the host stops gracefully (HostSetup.StopWithStdin)
            await _process.WaitForExitAsync().WaitAsync(StopTimeout);
        }
        catch (TimeoutException)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        await _drain;
        _process.Dispose();
    }
}
