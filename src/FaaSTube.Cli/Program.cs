// faastube: runs a FaaSTube node, shows what a running node holds and does, and probes the GPUs.
//   faastube node [--socket PATH] [--backend auto|cuda|simulated] [--topology h100|dgx1|dgx-a100] [--FaaSTube:Node:Key=value ...]
//   faastube status [--socket PATH] [--json] [--limit N]
//   faastube top [--socket PATH] [--interval SECONDS]
//   faastube probe [--backend ...] [--topology ...] [--sizes MiB ...] [--iterations N] [--model]
// The commands are in Commands/, the tables in Views/, the node's host in Node/.
using FaaSTube.Cli;
using Spectre.Console;

if (Console.IsOutputRedirected)
{
    AnsiConsole.Console.Profile.Width = 160; // into a file or a pipe: tables as wide as they need, not wrapped at 80 columns
}

return await CliApp.RunAsync(args, AnsiConsole.Console, Console.Error);
