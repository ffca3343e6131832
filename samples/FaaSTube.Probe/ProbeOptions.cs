using System.Globalization;
using FaaSTube.Devices;
using FaaSTube.Topology;

namespace FaaSTube.Samples.Probe;

/// <summary>Command line of the probe.</summary>
internal sealed record ProbeOptions(GpuBackend Backend, GpuTopology Topology, long[] Sizes, int Iterations, bool Model)
{
    public const string Usage = """
        usage: FaaSTube.Probe [--backend auto|cuda|simulated] [--topology h100|dgx1|dgx-a100]
                              [--sizes MiB,MiB,...] [--iterations N] [--model]
          --model   simulated GPU only: report the link model's bandwidth under a virtual clock
                    instead of this machine's memcpy speed
        """;

    public static ProbeOptions Parse(string[] args)
    {
        var options = new ProbeOptions(GpuBackend.Auto, GpuTopology.SingleH100, [1L << 20, 16L << 20, 64L << 20, 256L << 20], 5, false);
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.\n{Usage}");
            options = args[i] switch
            {
                "--backend" => options with { Backend = Enum.Parse<GpuBackend>(Value(), ignoreCase: true) },
                "--topology" => options with { Topology = GpuTopology.FromName(Value()) },
                "--sizes" => options with { Sizes = Value().Split(',').Select(s => (long)(double.Parse(s, CultureInfo.InvariantCulture) * (1 << 20))).ToArray() },
                "--iterations" => options with { Iterations = int.Parse(Value(), CultureInfo.InvariantCulture) },
                "--model" => options with { Model = true },
                _ => throw new ArgumentException($"Unknown option {args[i]}.\n{Usage}"),
            };
        }

        if (options.Sizes.Any(s => s <= 0 || s > int.MaxValue) || options.Iterations < 1)
        {
            throw new ArgumentException($"Sizes must be in (0, 2048) MiB and iterations at least 1.\n{Usage}");
        }

        return options;
    }
}
