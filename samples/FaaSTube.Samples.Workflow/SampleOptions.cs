using System.Globalization;
using FaaSTube.Devices;

namespace FaaSTube.Samples.Workflow;

internal sealed record SampleOptions(int Requests, int FanOut, bool InProcess, GpuBackend Backend, string? Worker, string? Socket, string Workflow, int Seed, string? Chart)
{
    public const string Usage = "usage: FaaSTube.Samples.Workflow [--requests N] [--fanout 2-4] [--in-process] [--backend auto|cuda|simulated] [--seed N] [--chart latency.svg|.png]";

    public static SampleOptions Parse(string[] args)
    {
        var o = new SampleOptions(10, 3, false, GpuBackend.Auto, null, null, "traffic", TrafficFlow.DefaultSeed, null);
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value. {Usage}");
            o = args[i] switch
            {
                "--requests" => o with { Requests = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--fanout" => o with { FanOut = Math.Clamp(int.Parse(Next(), CultureInfo.InvariantCulture), 2, 4) },
                "--in-process" => o with { InProcess = true },
                "--backend" => o with { Backend = Enum.Parse<GpuBackend>(Next(), ignoreCase: true) },
                "--seed" => o with { Seed = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--chart" => o with { Chart = Next() },
                "--worker" => o with { Worker = Next() },
                "--socket" => o with { Socket = Next() },
                "--workflow" => o with { Workflow = Next() },
                _ => throw new ArgumentException($"Unknown option {args[i]}. {Usage}"),
            };
        }

        return o;
    }
}

/// <summary>A stage process: connect to the node, say "ready", serve one request per line until stdin closes.</summary>
internal static class WorkerMain
{
    public static async Task<int> RunAsync(string stageName, SampleOptions options)
    {
        await using var client = await FaaSTube.Channels.TubeClient.ConnectAsync(new FaaSTube.Channels.TubeClientOptions
        {
            SocketPath = options.Socket!,
            Workflow = options.Workflow,
            Function = stageName,
            WindowBytes = 8 << 20,
            Gpus = new GpuSystemOptions { Backend = options.Backend },
        });
        using var worker = new StageWorker(client, Stage.ByName(stageName));
        Console.WriteLine("ready");
        while (await Console.In.ReadLineAsync() is { } line)
        {
            Console.WriteLine(await worker.RunAsync(line.Split(' ')));
        }

        return 0;
    }
}
