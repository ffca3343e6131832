using System.CommandLine;
using FaaSTube.Channels;

namespace FaaSTube.Cli.Commands;

/// <summary>Options several commands share.</summary>
internal static class CommonOptions
{
    /// <summary><c>--socket</c>: the node's socket (default: the node's default path).</summary>
    public static Option<string> Socket() => new("--socket", "-s")
    {
        Description = "The node's socket.",
        DefaultValueFactory = _ => TubeNodeOptions.DefaultSocketPath,
    };

    /// <summary><c>--limit</c>: the most sessions, workflows, objects and transfers to list each.</summary>
    public static Option<int> Limit(int byDefault)
    {
        var option = new Option<int>("--limit", "-n")
        {
            Description = "The most sessions, workflows, objects and transfers to list each (the node lists at most 1000 and says how many more there are).",
            DefaultValueFactory = _ => byDefault,
        };
        option.Validators.Add(r =>
        {
            int value = r.GetValueOrDefault<int>();
            if (value is < 0 or > 1000)
            {
                r.AddError($"--limit must be between 0 and 1000; it was {value}.");
            }
        });
        return option;
    }
}
