using System.CommandLine;
using FaaSTube.Channels.Admin;
using FaaSTube.Cli.Views;
using Spectre.Console;

namespace FaaSTube.Cli.Commands;

/// <summary><c>faastube status</c>: what a running node holds and does, as tables or as JSON (<see cref="NodeStatus"/>'s documented fields).</summary>
internal static class StatusCommand
{
    public static Command Create(IAnsiConsole console, TextWriter error)
    {
        var socket = CommonOptions.Socket();
        var limit = CommonOptions.Limit(byDefault: 50);
        var json = new Option<bool>("--json") { Description = "Print the status as JSON (stable field names: docs/protocol.md, \"The admin request\")." };
        var command = new Command("status", "Show what a running node holds and does: per GPU its pool, the sessions, the objects by workflow, transfers in flight and bytes by path.")
        {
            socket, limit, json,
        };
        command.SetAction(async (parsed, cancellationToken) =>
        {
            var status = await TubeAdmin.GetStatusAsync(parsed.GetValue(socket), parsed.GetValue(limit), cancellationToken: cancellationToken).ConfigureAwait(false);
            if (parsed.GetValue(json))
            {
                console.Profile.Out.Writer.WriteLine(TubeAdmin.ToJson(status)); // as it is: no markup, no wrapping
                console.Profile.Out.Writer.Flush();
            }
            else
            {
                console.Write(StatusView.Render(status));
            }

            return 0;
        });
        return command;
    }
}
