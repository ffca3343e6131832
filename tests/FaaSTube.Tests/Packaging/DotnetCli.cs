using System.Diagnostics;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Packaging;

/// <summary>
/// Runs the <c>dotnet</c> command line (the SDK the tests were built with) as a child process, bounded:
/// no build servers or reused MSBuild nodes outlive it (they would hold its output open), and none of the
/// MSBuild settings of the test run leak into it.
/// </summary>
internal static class DotnetCli
{
    public static readonly TimeSpan Timeout = TimeSpan.FromMinutes(8);

    /// <summary>The installed SDKs (<c>dotnet --list-sdks</c>), or null where there is no SDK to pack with.</summary>
    public static async Task<string?> SdksAsync()
    {
        try
        {
            var (code, output, _) = await RunAsync(Path.GetTempPath(), ["--list-sdks"], TimeSpan.FromMinutes(1));
            return code == 0 && output.Trim().Length > 0 ? output.Trim() : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    /// <summary>Runs <c>dotnet ARGS</c> in <paramref name="directory"/> with an empty standard input; kills it (and what it started) past <paramref name="timeout"/>.</summary>
    public static async Task<(int Code, string Output, string Error)> RunAsync(string directory, IEnumerable<string> args, TimeSpan? timeout = null, string? input = null)
    {
        var info = new ProcessStartInfo(ChildProcess.DotnetHost())
        {
            WorkingDirectory = directory,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach (var name in info.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) || k.Equals("DOTNET_HOST_PATH", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            info.Environment.Remove(name);
        }

        info.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        info.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";

        using var process = Process.Start(info) ?? throw new InvalidOperationException("dotnet did not start");
        if (input is not null)
        {
            await process.StandardInput.WriteAsync(input);
        }

        process.StandardInput.Close(); // then the end of the input (empty: what the gateway reads as "no configuration line"; after a line: its order to stop)
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var limit = new CancellationTokenSource(timeout ?? Timeout);
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            throw new AssertFailedException($"dotnet {string.Join(' ', args)} ran past {timeout ?? Timeout}; output so far: {Tail(await output)} {Tail(await error)}");
        }

        return (process.ExitCode, await output, await error);
    }

    /// <summary>The last lines of a command's output, for a failure message.</summary>
    public static string Tail(string text, int lines = 30) => string.Join('\n', text.Split('\n').TakeLast(lines));
}
