using FaaSTube.Cli;
using Spectre.Console.Testing;

namespace FaaSTube.Tests.Cli;

/// <summary>The <c>faastube</c> command run in process: its console (wide, so tables do not wrap) and error writer captured.</summary>
internal static class CliRun
{
    public static async Task<(int Code, string Output, string Error)> RunAsync(params string[] args)
    {
        using var console = new TestConsole();
        console.Profile.Width = 250;
        console.Profile.Capabilities.Unicode = true; // borders as a terminal draws them
        using var error = new StringWriter();
        int code = await CliApp.RunAsync(args, console, error);
        return (code, console.Output, error.ToString());
    }
}
