using System.Diagnostics;
using System.Globalization;
using FaaSTube.Devices;
using FaaSTube.Topology;

namespace FaaSTube.Bench.Devices;

/// <summary>
/// What waiting for the GPU costs the CPU: the process's CPU time while about 100 ms of GPU work is
/// awaited, FaaSTube's await beside a busy-wait on the same work (the old completion poller's
/// pattern: query, yield, query). Target: under 5 ms of CPU per 100 ms wait.
/// <code>dotnet run -c Release --project bench/FaaSTube.Bench -- completion-cpu [--iterations 10]</code>
/// On the simulated GPU, one 1 MiB host-to-device copy over a modelled 10 MB/s link, completed in
/// wall-clock time (<see cref="GpuSystemOptions.SimulatedRealTime"/>). On CUDA, a chain of device
/// fills sized to about 100 ms (one op per fill), awaited as one.
/// </summary>
internal static class CompletionCpuScenario
{
    private static readonly TimeSpan Target = TimeSpan.FromMilliseconds(100);

    public static async Task<int> RunAsync(string[] args)
    {
        int iterations = Option(args, "--iterations", 10);
        var backend = Environment.GetEnvironmentVariable(GpuSystemOptions.BackendVariable) is { Length: > 0 } b
            && Enum.TryParse<GpuBackend>(b, ignoreCase: true, out var parsed) ? parsed : GpuBackend.Auto;
        using var gpus = GpuSystem.Open(new GpuSystemOptions
        {
            Backend = backend,
            SimulatedTopology = SlowHostLink(),
            SimulatedRealTime = true,
            CopyChunkBytes = 1L << 40, // one op per copy or fill: the probe measures waiting, not chunking
        });
        var device = gpus.Devices[0];
        await using var work = await Work.CreateAsync(device);

        for (int i = 0; i < 5; i++)
        {
            await MeasureAsync(work, spin: false); // warm-up: JIT tiers, first ops
            await MeasureAsync(work, spin: true);
        }

        var awaited = new List<(TimeSpan Wall, TimeSpan Cpu)>();
        var spun = new List<(TimeSpan Wall, TimeSpan Cpu)>();
        var idle = new List<(TimeSpan Wall, TimeSpan Cpu)>();
        for (int i = 0; i < iterations; i++)
        {
            awaited.Add(await MeasureAsync(work, spin: false));
            spun.Add(await MeasureAsync(work, spin: true));
            idle.Add(await MeasureIdleAsync());
        }

        Console.WriteLine($"completion-cpu: CPU time of the process while about {Target.TotalMilliseconds:F0} ms of GPU work is awaited, {iterations} runs each");
        Console.WriteLine($"device: {device} ({gpus.SelectionReason}); work: {work.Description}; CPU from {ProcessCpuTime.Source}");
        Console.WriteLine();
        Console.WriteLine("| waiting | wall p50 | CPU p50 | CPU max | CPU per 100 ms wait (p50) | target |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | --- |");
        Row("FaaSTube await (completion thread)", awaited, "< 5 ms");
        Row("busy-wait baseline (query + yield)", spun, "-");
        Row("floor: the idle process (await Task.Delay(100 ms))", idle, "-");
        return 0;
    }

    private static void Row(string name, List<(TimeSpan Wall, TimeSpan Cpu)> runs, string target)
    {
        var wall = Median(runs.Select(r => r.Wall));
        var cpu = Median(runs.Select(r => r.Cpu));
        var max = runs.Max(r => r.Cpu);
        double per100 = cpu.TotalMilliseconds / wall.TotalMilliseconds * 100;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {name} | {wall.TotalMilliseconds:F1} ms | {cpu.TotalMilliseconds:F2} ms | {max.TotalMilliseconds:F2} ms | {per100:F2} ms | {target} |"));
    }

    /// <summary>Issues the work and waits for it: awaiting the task, or spinning on it with yields as the old poller did.</summary>
    private static async Task<(TimeSpan Wall, TimeSpan Cpu)> MeasureAsync(Work work, bool spin)
    {
        var cpu0 = ProcessCpuTime.Now();
        long t0 = Stopwatch.GetTimestamp();
        var task = work.RunAsync();
        if (spin)
        {
            while (!task.IsCompleted)
            {
                Thread.Yield();
            }
        }

        await task;
        var wall = Stopwatch.GetElapsedTime(t0);
        return (wall, ProcessCpuTime.Now() - cpu0);
    }

    /// <summary>The process's own background CPU (runtime threads, timers) over the same window, with no GPU work.</summary>
    private static async Task<(TimeSpan Wall, TimeSpan Cpu)> MeasureIdleAsync()
    {
        var cpu0 = ProcessCpuTime.Now();
        long t0 = Stopwatch.GetTimestamp();
        await Task.Delay(Target);
        return (Stopwatch.GetElapsedTime(t0), ProcessCpuTime.Now() - cpu0);
    }

    private static TimeSpan Median(IEnumerable<TimeSpan> values)
    {
        var sorted = values.Order().ToArray();
        return sorted[sorted.Length / 2];
    }

    /// <summary>One simulated GPU whose host link moves 10 MB/s: 1 MiB takes about 105 ms in the model.</summary>
    private static GpuTopology SlowHostLink() =>
        new("slow-host-link", new PeerLink[1, 1], [0], 10e6, 1450e9, 1L << 30, TimeSpan.FromMicroseconds(5));

    private static int Option(string[] args, string name, int fallback)
    {
        int at = Array.IndexOf(args, name);
        return at >= 0 && at + 1 < args.Length ? int.Parse(args[at + 1], CultureInfo.InvariantCulture) : fallback;
    }

    /// <summary>About 100 ms of GPU work on one stream.</summary>
    private sealed class Work : IAsyncDisposable
    {
        private readonly GpuStream _stream;
        private readonly DeviceBuffer _buffer;
        private readonly PinnedBuffer? _source;
        private readonly int _fills;

        private Work(GpuStream stream, DeviceBuffer buffer, PinnedBuffer? source, int fills, string description)
        {
            _stream = stream;
            _buffer = buffer;
            _source = source;
            _fills = fills;
            Description = description;
        }

        public string Description { get; }

        public static async Task<Work> CreateAsync(GpuDevice device)
        {
            var stream = device.CreateStream();
            if (device.Backend == GpuBackend.Simulated)
            {
                var source = device.AllocatePinned(1 << 20);
                return new Work(stream, device.Allocate(1 << 20), source, 0, "1 MiB pinned host-to-device copy over a modelled 10 MB/s link");
            }

            long bytes = Math.Min(8L << 30, device.GetMemoryInfo().Free / 4);
            var buffer = device.Allocate(bytes);
            long t0 = Stopwatch.GetTimestamp();
            await stream.FillAsync(buffer, 1);
            await stream.FillAsync(buffer, 2);
            var one = Stopwatch.GetElapsedTime(t0) / 2;
            int fills = (int)Math.Clamp(Math.Ceiling(Target / one), 1, 10_000);
            return new Work(stream, buffer, null, fills, $"{fills} fills of {bytes >> 20} MiB ({one.TotalMilliseconds:F2} ms each), one op each");
        }

        public async Task RunAsync()
        {
            if (_source is not null)
            {
                await _stream.CopyAsync(_source.Memory, _buffer);
                return;
            }

            var pending = new ValueTask[_fills];
            for (int i = 0; i < _fills; i++)
            {
                pending[i] = _stream.FillAsync(_buffer, (byte)i);
            }

            foreach (var p in pending)
            {
                await p;
            }
        }

        public ValueTask DisposeAsync()
        {
            _stream.Dispose();
            _buffer.Dispose();
            ((IDisposable?)_source)?.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
