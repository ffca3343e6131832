using System.CommandLine;
using FaaSTube.Channels.Admin;
using FaaSTube.Cli.Views;
using Spectre.Console;

namespace FaaSTube.Cli.Commands;

/// <summary>
/// <c>faastube top</c>: the status redrawn in place (Spectre's live display) every interval, with a
/// usage bar per GPU and each path's throughput between two snapshots; <c>q</c> (or Ctrl+C) quits.
/// </summary>
internal static class TopCommand
{
    public static Command Create(IAnsiConsole console, TextWriter error)
    {
        var socket = CommonOptions.Socket();
        var limit = CommonOptions.Limit(byDefault: 10);
        var interval = new Option<double>("--interval", "-i") { Description = "Seconds between refreshes.", DefaultValueFactory = _ => 1.0 };
        CommonOptions.Require(interval, v => v is >= 0.1 and <= 3600, v => $"--interval must be between 0.1 and 3600 seconds; it was {v}.");
        var command = new Command("top", "Show the node's status live, refreshed in place, with GPU usage bars and throughput by path; q quits.")
        {
            socket, limit, interval,
        };
        command.SetAction((parsed, cancellationToken) => RunAsync(console, parsed.GetValue(socket)!, parsed.GetValue(limit), TimeSpan.FromSeconds(parsed.GetValue(interval)), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(IAnsiConsole console, string socket, int limit, TimeSpan interval, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        ConsoleCancelEventHandler onCtrlC = (_, e) =>
        {
            e.Cancel = true; // leave through the live display's end, so the cursor comes back
            stop.Cancel();
        };
        Console.CancelKeyPress += onCtrlC;
        try
        {
            var first = await TubeAdmin.GetStatusAsync(socket, limit, cancellationToken: stop.Token).ConfigureAwait(false); // no node: the error, before any display
            var previous = (Status: first, At: TimeProvider.System.GetTimestamp());
            var key = console.Input.ReadKeyAsync(intercept: true, stop.Token);
            await console.Live(Frame(first, null)).AutoClear(false).Overflow(VerticalOverflow.Crop).StartAsync(async live =>
            {
                live.Refresh();
                while (!stop.IsCancellationRequested)
                {
                    var tick = Task.Delay(interval, stop.Token);
                    while (await Task.WhenAny(key, tick).ConfigureAwait(false) == key)
                    {
                        var pressed = await key.ConfigureAwait(false);
                        if (pressed is { KeyChar: 'q' or 'Q' } || pressed is { Key: ConsoleKey.Escape } || pressed is null)
                        {
                            return;
                        }

                        key = console.Input.ReadKeyAsync(intercept: true, stop.Token);
                    }

                    var status = await TubeAdmin.GetStatusAsync(socket, limit, cancellationToken: stop.Token).ConfigureAwait(false);
                    long now = TimeProvider.System.GetTimestamp();
                    live.UpdateTarget(Frame(status, Rates(previous.Status, status, TimeProvider.System.GetElapsedTime(previous.At, now))));
                    live.Refresh();
                    previous = (status, now);
                }
            }).ConfigureAwait(false);
            return 0;
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            return 0; // Ctrl+C
        }
        finally
        {
            Console.CancelKeyPress -= onCtrlC;
            await stop.CancelAsync().ConfigureAwait(false); // the pending key read ends
        }
    }

    private static Spectre.Console.Rendering.IRenderable Frame(NodeStatus status, IReadOnlyDictionary<string, (double, double)>? rates) =>
        new Rows(StatusView.Render(status, rates ?? status.Paths.ToDictionary(p => p.Path, _ => (0.0, 0.0)), bars: true), new Markup("[grey]q quits[/]"));

    /// <summary>Bytes per second by path between two snapshots.</summary>
    internal static Dictionary<string, (double Received, double Transmitted)> Rates(NodeStatus before, NodeStatus after, TimeSpan elapsed)
    {
        double seconds = Math.Max(elapsed.TotalSeconds, 1e-3);
        var old = before.Paths.ToDictionary(p => p.Path);
        return after.Paths.ToDictionary(p => p.Path, p =>
        {
            var o = old.GetValueOrDefault(p.Path) ?? p with { ReceivedBytes = 0, TransmittedBytes = 0 };
            return (Math.Max(0, p.ReceivedBytes - o.ReceivedBytes) / seconds, Math.Max(0, p.TransmittedBytes - o.TransmittedBytes) / seconds);
        });
    }
}
