using System.Diagnostics;
using System.Globalization;
using FaaSTube.Channels;
using FaaSTube.Devices;

namespace FaaSTube.Bench.Channels;

/// <summary>
/// Handing 64 MiB from one process to another on the same GPU, three ways in one run:
/// FaaSTube (Allocate + Publish in the producer, Get mapped in the consumer, the slab already open),
/// a fresh IPC open of a new allocation per handoff, and a hop through host memory (GPU -> shared
/// memory file -> GPU); plus a 256 MiB Put from a client process. The consumer is a child process
/// (this program with "handoff-consumer"); it times its own side and reports it, so the stdin/stdout
/// signalling between the two is not counted.
/// <code>dotnet run -c Release --project bench/FaaSTube.Bench -- channel-handoff [--iterations 50] [--mib 64]</code>
/// </summary>
internal static class HandoffScenario
{
    public static async Task<int> RunAsync(string[] args)
    {
        int iterations = Option(args, "--iterations", 50);
        long bytes = (long)Option(args, "--mib", 64) << 20;
        string socket = Path.Combine(Path.GetTempPath(), $"ft-bench-{Environment.ProcessId}.sock");
        await using var node = await TubeNode.StartAsync(new TubeNodeOptions { SocketPath = socket, Pool = new() { SlabBytes = Math.Max(256L << 20, 2 * bytes) } });
        var backend = node.Gpus.Backend;
        await using var producer = await TubeClient.ConnectInProcessAsync(node, new TubeClientOptions { Workflow = "bench", Function = "producer" });
        using var consumer = Consumer.Start(socket, backend);
        var device = node.Gpus.Devices[0];
        using var stream = device.CreateStream();

        var tube = new List<double>();
        var produceOnly = new List<double>();
        var freshIpc = new List<double>();
        var hostHop = new List<double>();
        // Each path in a loop of its own, so that one path's garbage and page traffic (the host hop
        // moves 64 MiB through managed arrays and files) is not billed to the next.
        for (int i = -3; i < iterations; i++) // 3 warm-ups: slab opened, kernels and pages warm
        {
            long t0 = Stopwatch.GetTimestamp();
            var buffer = await producer.AllocateAsync(bytes);
            var id = await producer.PublishAsync(buffer, stream);
            double produce = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            double get = double.Parse(await consumer.AskAsync($"get {id}"), CultureInfo.InvariantCulture);
            Add(tube, i, produce + get);
            Add(produceOnly, i, produce);
        }

        for (int i = -3; i < iterations; i++)
        {
            using var fresh = device.Allocate(bytes);
            long t0 = Stopwatch.GetTimestamp();
            var handle = device.Export(fresh);
            double export = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            Add(freshIpc, i, export + double.Parse(await consumer.AskAsync($"import {handle}"), CultureInfo.InvariantCulture));
        }

        using (var source = device.Allocate(bytes))
        {
            var host = new byte[bytes];
            string file = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), $"faastube-bench.{Environment.ProcessId}");
            for (int i = -3; i < iterations; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                await stream.CopyAsync(source, host.AsMemory());
                await File.WriteAllBytesAsync(file, host);
                double down = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
                Add(hostHop, i, down + double.Parse(await consumer.AskAsync($"file {file}"), CultureInfo.InvariantCulture));
                File.Delete(file);
            }
        }

        var put = new List<double>();
        for (int i = -1; i < Math.Max(3, iterations / 10); i++)
        {
            Add(put, i, double.Parse(await consumer.AskAsync($"put {256L << 20}"), CultureInfo.InvariantCulture));
        }

        Console.WriteLine($"channel-handoff: {bytes >> 20} MiB between two processes on one GPU ({backend}, {device.Name}), {iterations} handoffs each");
        Console.WriteLine();
        Console.WriteLine("| path | p50 | p99 |");
        Console.WriteLine("| --- | ---: | ---: |");
        Console.WriteLine($"| FaaSTube: Allocate + Publish, Get mapped (slab already open) | {Us(P(tube, 0.5))} | {Us(P(tube, 0.99))} |");
        Console.WriteLine($"| of which the producer's Allocate + Publish | {Us(P(produceOnly, 0.5))} | {Us(P(produceOnly, 0.99))} |");
        Console.WriteLine($"| fresh IPC export + open per buffer | {Us(P(freshIpc, 0.5))} | {Us(P(freshIpc, 0.99))} |");
        Console.WriteLine($"| host-memory hop (GPU -> /dev/shm file -> GPU) | {Us(P(hostHop, 0.5))} | {Us(P(hostHop, 0.99))} |");
        double gbps = (256L << 20) / (P(put, 0.5) / 1e6) / 1e9;
        Console.WriteLine();
        Console.WriteLine($"Put of 256 MiB from a client process: p50 {P(put, 0.5) / 1000:F1} ms = {gbps:F1} GB/s end to end");
        return 0;
    }

    /// <summary>The consumer process: "get ID", "import HANDLE", "file PATH", "put BYTES"; answers with its own time in microseconds.</summary>
    public static async Task<int> ConsumerMainAsync(string[] args)
    {
        var backend = Enum.Parse<GpuBackend>(args[1]);
        await using var client = await TubeClient.ConnectAsync(new TubeClientOptions
        {
            SocketPath = args[0],
            Workflow = "bench",
            Function = "consumer",
            Gpus = new GpuSystemOptions { Backend = backend },
        });
        var device = client.Gpus.Devices[0];
        using var stream = device.CreateStream();
        Console.WriteLine("ready");
        while (await Console.In.ReadLineAsync() is { } line)
        {
            var parts = line.Split(' ');
            long t0 = Stopwatch.GetTimestamp();
            switch (parts[0])
            {
                case "get":
                    var buffer = await client.GetAsync(TubeId.Parse(parts[1]));
                    double us = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
                    await buffer.DisposeAsync();
                    Console.WriteLine(us.ToString(CultureInfo.InvariantCulture));
                    continue;
                case "import":
                    using (var mapped = device.Import(IpcMemoryHandle.Parse(parts[1])))
                    {
                        Console.WriteLine(Stopwatch.GetElapsedTime(t0).TotalMicroseconds.ToString(CultureInfo.InvariantCulture));
                    }

                    continue;
                case "file":
                    var bytes = await File.ReadAllBytesAsync(parts[1]);
                    using (var target = device.Allocate(bytes.Length))
                    {
                        await stream.CopyAsync(bytes, target);
                        Console.WriteLine(Stopwatch.GetElapsedTime(t0).TotalMicroseconds.ToString(CultureInfo.InvariantCulture));
                    }

                    continue;
                case "put":
                    var data = new byte[long.Parse(parts[1], CultureInfo.InvariantCulture)];
                    t0 = Stopwatch.GetTimestamp();
                    var id = await client.PutAsync(data);
                    Console.WriteLine(Stopwatch.GetElapsedTime(t0).TotalMicroseconds.ToString(CultureInfo.InvariantCulture));
                    await client.DeleteAsync(id);
                    continue;
            }
        }

        return 0;
    }

    private static void Add(List<double> into, int iteration, double value)
    {
        if (iteration >= 0)
        {
            into.Add(value);
        }
    }

    private static double P(List<double> values, double q)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        return sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];
    }

    private static string Us(double us) => us >= 1000 ? $"{us / 1000:F2} ms" : $"{us:F0} us";

    private static int Option(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    }

    /// <summary>The consumer child process.</summary>
    private sealed class Consumer : IDisposable
    {
        private readonly Process _process;

        private Consumer(Process process) => _process = process;

        public static Consumer Start(string socket, GpuBackend backend)
        {
            var self = Environment.ProcessPath!;
            var info = new ProcessStartInfo(self) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
            if (Path.GetFileNameWithoutExtension(self) == "dotnet")
            {
                info.ArgumentList.Add(typeof(HandoffScenario).Assembly.Location);
            }

            foreach (var a in new[] { "handoff-consumer", socket, backend.ToString() })
            {
                info.ArgumentList.Add(a);
            }

            var process = Process.Start(info)!;
            var ready = process.StandardOutput.ReadLine();
            return ready == "ready" ? new Consumer(process) : throw new InvalidOperationException($"The consumer did not start: {ready}");
        }

        public async Task<string> AskAsync(string request)
        {
            await _process.StandardInput.WriteLineAsync(request);
            await _process.StandardInput.FlushAsync();
            return await _process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120)) ?? throw new InvalidOperationException("The consumer exited.");
        }

        public void Dispose()
        {
            _process.StandardInput.Close();
            _process.WaitForExit(30_000);
            _process.Dispose();
        }
    }
}
