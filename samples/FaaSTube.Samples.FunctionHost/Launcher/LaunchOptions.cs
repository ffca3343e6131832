using System.Globalization;
using FaaSTube.Devices;
using FaaSTube.Samples.Traffic;

namespace FaaSTube.Samples.FunctionHost.Launcher;

/// <summary>The launcher's switches (<c>--all</c>): requests, classifiers, seed, GPU backend.</summary>
internal sealed record LaunchOptions(int Requests, int FanOut, int Seed, GpuBackend Backend)
{
    public const string Usage = "usage: FaaSTube.Samples.FunctionHost --all [--requests N] [--fanout 1-8] [--seed N] [--backend auto|cuda|simulated]\n" +
        "       FaaSTube.Samples.FunctionHost --function preprocess|detect|classify   (one function; PORT, FaaSTube:Client:* from the environment)\n" +
        "       FaaSTube.Samples.FunctionHost --gateway   (Gateway:Preprocess, Gateway:Detect, Gateway:Classify:0.. = the functions' URLs)";

    public static LaunchOptions Parse(string[] args)
    {
        var o = new LaunchOptions(10, 3, TrafficFlow.DefaultSeed, GpuBackend.Auto);
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.\n{Usage}");
            int Number(int min, int max)
            {
                string name = args[i];
                string text = Next();
                return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n >= min && n <= max
                    ? n
                    : throw new ArgumentException($"{name}: '{text}' is not a whole number from {min} to {max}.\n{Usage}");
            }

            o = args[i] switch
            {
                "--all" => o,
                "--requests" => o with { Requests = Number(1, 100_000) },
                "--fanout" => o with { FanOut = Number(1, 8) },
                "--seed" => o with { Seed = Number(int.MinValue + 1, int.MaxValue - 100_000) },
                "--backend" => o with
                {
                    Backend = Enum.TryParse<GpuBackend>(Next(), ignoreCase: true, out var backend)
                        ? backend
                        : throw new ArgumentException($"--backend: '{args[i]}' is not one of auto, cuda, simulated.\n{Usage}"),
                },
                _ => throw new ArgumentException($"Unknown option {args[i]}.\n{Usage}"),
            };
        }

        return o;
    }
}
