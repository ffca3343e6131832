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
        Require(option, v => v is >= 0 and <= 1000, v => $"--limit must be between 0 and 1000; it was {v}.");
        return option;
    }

    /// <summary>A check of an option's value; a value that is not even a <typeparamref name="T"/> is left to the parser's own error.</summary>
    public static void Require<T>(Option<T> option, Func<T, bool> ok, Func<T, string> message)
    {
        option.Validators.Add(r =>
        {
            T? value;
            try
            {
                value = r.GetValueOrDefault<T>();
            }
            catch (InvalidOperationException)
            {
                return; // not a T: System.CommandLine reports that itself
            }

            if (value is not null && !ok(value))
            {
                r.AddError(message(value));
            }
        });
    }
}
