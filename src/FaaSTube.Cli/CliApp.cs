using System.CommandLine;
using System.CommandLine.Help;
using FaaSTube.Cli.Commands;
using Spectre.Console;

namespace FaaSTube.Cli;

/// <summary>
/// The <c>faastube</c> command line (System.CommandLine): <c>node</c>, <c>status</c>, <c>top</c>,
/// <c>probe</c>. Everything it prints goes to the console and error writer it is given, so tests run
/// it in process. Exit codes: 0 done, 1 bad usage (a clear message and the usage), 2 the node is not
/// running, refused or failed (a clear message, never a stack trace).
/// </summary>
internal static class CliApp
{
    /// <summary>Exit code of a failure that is not the user's usage: no node, refused, a failed measurement.</summary>
    public const int Failed = 2;

    /// <summary>Exit code of bad usage (as System.CommandLine's own parse errors).</summary>
    public const int Usage = 1;

    /// <summary>Parses <paramref name="args"/> and runs the command.</summary>
    /// <param name="args">The command line.</param>
    /// <param name="console">Where tables, live displays and progress go (stdout for people).</param>
    /// <param name="error">Where errors go (stderr).</param>
    /// <param name="cancellationToken">Stops the command.</param>
    public static async Task<int> RunAsync(string[] args, IAnsiConsole console, TextWriter error, CancellationToken cancellationToken = default)
    {
        // A command named faastube, not a RootCommand (which takes the executable's name: FaaSTube.Cli), with the root's help and version.
        var root = new Command("faastube", "Run a FaaSTube node, see what it holds and does, and probe the GPUs.")
        {
            new HelpOption(),
            new VersionOption(),
            NodeCommand.Create(console, error),
            StatusCommand.Create(console, error),
            TopCommand.Create(console, error),
            ProbeCommand.Create(console, error),
        };

        var output = new AnsiConsoleWriter(console);
        var parsed = root.Parse(args);
        try
        {
            return await parsed.InvokeAsync(new InvocationConfiguration
            {
                Output = output,
                Error = error,
                EnableDefaultExceptionHandler = false, // our own: a message, never a stack trace
                ProcessTerminationTimeout = null, // `node` stops on the host's own signal handling, `top` on q or Ctrl+C
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (FaaSTubeException e)
        {
            await error.WriteLineAsync($"faastube: {e.Message} ({e.Code})").ConfigureAwait(false);
            return Failed;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return Failed;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or UnauthorizedAccessException or Microsoft.Extensions.Options.OptionsValidationException)
        {
            await error.WriteLineAsync($"faastube: {e.Message}").ConfigureAwait(false);
            return Failed;
        }
    }
}

/// <summary>A <see cref="TextWriter"/> onto an <see cref="IAnsiConsole"/>: System.CommandLine's help and messages go where the tables go.</summary>
internal sealed class AnsiConsoleWriter(IAnsiConsole console) : StringWriter(System.Globalization.CultureInfo.InvariantCulture)
{
    public override void Write(char value) => console.Write(new Text(value.ToString()));

    public override void Write(string? value)
    {
        if (!string.IsNullOrEmpty(value))
        {
            console.Write(new Text(value));
        }
    }

    public override void WriteLine(string? value)
    {
        Write(value);
        console.WriteLine();
    }

    public override void WriteLine() => console.WriteLine();
}
