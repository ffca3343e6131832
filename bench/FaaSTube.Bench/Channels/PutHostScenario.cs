using System.Diagnostics;
using System.Globalization;
using FaaSTube.Channels;

namespace FaaSTube.Bench.Channels;

/// <summary>
/// Put of host data, host-side bandwidth, beside its baseline in the same run: a Put of 256 MiB from
/// ordinary memory (copied into the window's slots by several threads while the node DMAs the slot
/// before), a Put of the same from window memory (a rented <see cref="WindowBuffer"/>: DMA only), and
/// a parallel memcpy of the same bytes with the same thread count into a preallocated buffer. The
/// client and the node share this process (the in-process client: the same window, slots and parts
/// as over the socket, without the socket). Host bytes copied are the client's own count.
/// <code>FAASTUBE_BACKEND=simulated dotnet run -c Release --project bench/FaaSTube.Bench -- put-host [--iterations 10] [--mib 256]</code>
/// </summary>
internal static class PutHostScenario
{
    public static async Task<int> RunAsync(string[] args)
    {
        int iterations = Option(args, "--iterations", 10);
        int bytes = checked(Option(args, "--mib", 256) << 20);
        int threads = Environment.ProcessorCount;
        string socket = Path.Combine(Path.GetTempPath(), $"ft-bench-{Environment.ProcessId}.sock");
        await using var node = await TubeNode.StartAsync(new TubeNodeOptions { SocketPath = socket, Pool = new() { SlabBytes = Math.Max(256L << 20, 2L * bytes) } });
        await using var ordinary = await TubeClient.ConnectInProcessAsync(node, new TubeClientOptions { Workflow = "bench", Function = "put-ordinary" });
        await using var windowed = await TubeClient.ConnectInProcessAsync(node, new TubeClientOptions { Workflow = "bench", Function = "put-window", WindowBytes = bytes });

        var data = new byte[bytes];
        Random.Shared.NextBytes(data);
        var target = new byte[bytes];
        target.AsSpan().Fill(1); // faulted in before the first timing

        var memcpy = new List<double>();
        var memcpyOne = new List<double>();
        var putOrdinary = new List<double>();
        var putWindow = new List<double>();
        long copiedOrdinary = 0, copiedWindow = 0;
        for (int i = -2; i < iterations; i++) // 2 warm-ups: pages, slabs, JIT
        {
            long t0 = Stopwatch.GetTimestamp();
            ParallelCopy(data, target, threads);
            Add(memcpy, i, Stopwatch.GetElapsedTime(t0));

            t0 = Stopwatch.GetTimestamp();
            data.AsSpan().CopyTo(target);
            Add(memcpyOne, i, Stopwatch.GetElapsedTime(t0));

            long before = ordinary.HostBytesCopied;
            t0 = Stopwatch.GetTimestamp();
            var id = await ordinary.PutAsync(data);
            Add(putOrdinary, i, Stopwatch.GetElapsedTime(t0));
            copiedOrdinary = ordinary.HostBytesCopied - before;
            await ordinary.DeleteAsync(id);

            var buffer = await windowed.RentWindowAsync(bytes);
            buffer.Memory.Span[(i & 0xff)..].Fill((byte)i); // the producer writes its output in place (not timed: it would write it anywhere)
            before = windowed.HostBytesCopied;
            t0 = Stopwatch.GetTimestamp();
            id = await windowed.PutAsync(buffer);
            Add(putWindow, i, Stopwatch.GetElapsedTime(t0));
            copiedWindow = windowed.HostBytesCopied - before;
            await windowed.DeleteAsync(id);
        }

        double baseline = GBps(bytes, P50(memcpy));
        Console.WriteLine($"put-host: {bytes >> 20} MiB per Put, {iterations} iterations (p50), {threads} threads, {node.Gpus.Backend} backend ({node.Gpus.Devices[0].Name}), in-process client");
        Console.WriteLine($"ordinary client: window {new TubeClientOptions().WindowBytes >> 20} MiB (the default) in {ordinary.WindowSlotLength >> 10} KiB slots; window client: window {bytes >> 20} MiB");
        Console.WriteLine();
        Console.WriteLine("| path | GB/s | ratio to baseline | host bytes copied per Put |");
        Console.WriteLine("| --- | ---: | ---: | ---: |");
        Row($"baseline: parallel memcpy, {threads} threads (Parallel.For over chunks into a preallocated buffer)", GBps(bytes, P50(memcpy)), baseline, "-");
        Row("reference: memcpy, 1 thread", GBps(bytes, P50(memcpyOne)), baseline, "-");
        Row("Put from ordinary memory (PutAsync(ReadOnlyMemory))", GBps(bytes, P50(putOrdinary)), baseline, copiedOrdinary.ToString(CultureInfo.InvariantCulture));
        Row("Put from window memory (RentWindowAsync + PutAsync(WindowBuffer))", GBps(bytes, P50(putWindow)), baseline, copiedWindow.ToString(CultureInfo.InvariantCulture));
        return copiedWindow == 0 ? 0 : 1;
    }

    private static void ParallelCopy(byte[] source, byte[] destination, int threads) =>
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            int start = (int)((long)source.Length * t / threads);
            int end = (int)((long)source.Length * (t + 1) / threads);
            source.AsSpan(start, end - start).CopyTo(destination.AsSpan(start, end - start));
        });

    private static void Row(string path, double gbps, double baseline, string copied) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {path} | {gbps:F2} | {gbps / baseline:P0} | {copied} |"));

    private static void Add(List<double> into, int iteration, TimeSpan elapsed)
    {
        if (iteration >= 0)
        {
            into.Add(elapsed.TotalSeconds);
        }
    }

    private static double P50(List<double> seconds) => seconds.Order().ElementAt(seconds.Count / 2);

    private static double GBps(long bytes, double seconds) => bytes / seconds / 1e9;

    private static int Option(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    }
}
