using System.CommandLine;
using FaaSTube.Cli.Node;
using FaaSTube.Devices;
using Spectre.Console;

namespace FaaSTube.Cli.Commands;

/// <summary>
/// <c>faastube node</c>: runs a node on the Generic Host (<see cref="NodeHostBuilder"/>, as the NodeHost
/// sample does) until Ctrl+C or SIGTERM. Its switches set configuration keys; any other
/// <c>--FaaSTube:Node:...=value</c> is passed to the configuration as it is.
/// </summary>
internal static class NodeCommand
{
    public static Command Create(IAnsiConsole console, TextWriter error)
    {
        var socket = new Option<string>("--socket", "-s") { Description = "The socket clients connect to (FaaSTube:Node:SocketPath)." };
        var backend = new Option<GpuBackend?>("--backend") { Description = "auto, cuda or simulated (FaaSTube:Node:Gpus:Backend)." };
        var topology = new Option<string>("--topology") { Description = "The simulated GPUs' topology: h100, dgx1 or dgx-a100 (FaaSTube:Node:Gpus:SimulatedTopology)." };
        topology.AcceptOnlyFromAmong("h100", "dgx1", "dgx-a100");
        var otlp = new Option<Uri>("--otlp") { Description = "Send metrics and traces to this OTLP endpoint (FaaSTube:Telemetry:OtlpEndpoint)." };
        var adminUids = new Option<uint[]>("--admin-uid") { Description = "A user id besides the node's own that may run `faastube status` (FaaSTube:Node:AdminUids); repeatable.", AllowMultipleArgumentsPerToken = false };
        var telemetry = new Option<bool>("--console-telemetry") { Description = "Print metrics and traces on the console when no OTLP endpoint is set." };
        var command = new Command("node", "Run a FaaSTube node until Ctrl+C or SIGTERM; settings from appsettings.json, FAASTUBE__NODE__* environment variables and these flags (any --FaaSTube:Node:Key=value too).")
        {
            socket, backend, topology, otlp, adminUids, telemetry,
        };
        command.TreatUnmatchedTokensAsErrors = false; // --FaaSTube:Node:Pool:SlabBytes=... goes to the configuration
        command.SetAction(async (parsed, cancellationToken) =>
        {
            var configuration = new List<string>();
            bool valueNext = false; // after "--FaaSTube:Key" without "=": its value
            foreach (var token in parsed.UnmatchedTokens)
            {
                bool key = token.StartsWith("--FaaSTube:", StringComparison.OrdinalIgnoreCase) || token.StartsWith("--Logging:", StringComparison.OrdinalIgnoreCase);
                if (!key && !(valueNext && !token.StartsWith('-')))
                {
                    await error.WriteLineAsync($"faastube: Unknown argument '{token}'. Settings other than the flags are --FaaSTube:Node:Key=value (see `faastube node --help`).").ConfigureAwait(false);
                    return CliApp.Usage;
                }

                valueNext = key && !token.Contains('=', StringComparison.Ordinal);
                configuration.Add(token);
            }

            void Set(string key, string? value)
            {
                if (value is not null)
                {
                    configuration.Add($"--{key}={value}");
                }
            }

            Set("FaaSTube:Node:SocketPath", parsed.GetValue(socket));
            Set("FaaSTube:Node:Gpus:Backend", parsed.GetValue(backend)?.ToString());
            Set("FaaSTube:Node:Gpus:SimulatedTopology", parsed.GetValue(topology));
            Set("FaaSTube:Telemetry:OtlpEndpoint", parsed.GetValue(otlp)?.ToString());
            var uids = parsed.GetValue(adminUids) ?? [];
            for (int i = 0; i < uids.Length; i++)
            {
                Set($"FaaSTube:Node:AdminUids:{i}", uids[i].ToString(System.Globalization.CultureInfo.InvariantCulture));
            }

            using var host = NodeHostBuilder.Create([.. configuration], parsed.GetValue(telemetry)).Build();
            await NodeHostBuilder.RunAsync(host, new AnsiConsoleWriter(console), cancellationToken).ConfigureAwait(false);
            return 0;
        });
        return command;
    }
}
