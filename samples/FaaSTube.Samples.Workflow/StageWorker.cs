using System.Diagnostics;
using FaaSTube.Channels;
using FaaSTube.Devices;

namespace FaaSTube.Samples.Workflow;

/// <summary>
/// A stage as a function: it runs in a process of its own (or as a task, in-process mode) and serves
/// requests "&lt;mode&gt; &lt;input&gt; &lt;salt&gt; &lt;consumers&gt;". In every mode the kernels run on warm device
/// memory, so compute costs the same: through FaaSTube the input is the producer's pool buffer mapped
/// here (zero copy) and the output comes from the pool's cache; through host memory the stage keeps
/// one device input and one device output buffer, allocated on its first host request, as a function
/// with a caching allocator would. The host modes differ only in how a hop crosses host memory: see
/// <see cref="Mode"/>.
/// </summary>
internal sealed class StageWorker(TubeClient client, Stage stage) : IDisposable
{
    private readonly GpuDevice _device = client.Gpus.Devices[0];
    private readonly GpuStream _stream = client.Gpus.Devices[0].CreateStream();
    private readonly Dictionary<string, HostRegion> _inputs = []; // best: producers' regions, mapped and registered once
    private DeviceBuffer? _deviceInput;
    private DeviceBuffer? _deviceOutput;
    private HostRegion? _output;                                  // best: this stage's pinned output region

    /// <summary>Serves one request; the reply is "&lt;output reference&gt; &lt;input ms&gt; &lt;compute ms&gt; &lt;output ms&gt;".</summary>
    public async Task<string> RunAsync(string[] request)
    {
        var mode = Modes.Parse(request[0]);
        ulong salt = ulong.Parse(request[2]);
        return mode == Mode.Tube
            ? await ThroughTubeAsync(TubeId.Parse(request[1]), salt, int.Parse(request[3]))
            : await ThroughHostAsync(mode, request[1], salt);
    }

    private async Task<string> ThroughTubeAsync(TubeId input, ulong salt, int consumers)
    {
        long t0 = Stopwatch.GetTimestamp();
        var allocating = client.AllocateAsync(stage.OutputBytes);        // from the pool's cache, to write in place: overlapped with the Get
        TubeBuffer received;
        try
        {
            received = await client.GetAsync(input);                     // zero copy: the producer's pool memory, mapped (one round trip)
        }
        catch
        {
            await (await allocating).DisposeAsync();                      // the output is not needed any more
            throw;
        }

        await using var source = received;
        var output = await allocating;
        double inputMs = StageTimes.Ms(t0);

        long t1 = Stopwatch.GetTimestamp();
        await Stage.ComputeAsync(_stream, source.Memory, output.Memory, salt);
        double computeMs = StageTimes.Ms(t1);

        long t2 = Stopwatch.GetTimestamp();
        var id = await client.PublishAsync(output, _stream, new PutOptions { Consumers = consumers }); // one way: no round trip
        return $"{id} {new StageTimes(inputMs, computeMs, StageTimes.Ms(t2))}";
    }

    private async Task<string> ThroughHostAsync(Mode mode, string inputPath, ulong salt)
    {
        bool best = mode == Mode.HostBest;
        long t0 = Stopwatch.GetTimestamp();
        var input = best ? InputRegion(inputPath) : HostRegion.Open(inputPath);
        try
        {
            _deviceInput ??= _device.Allocate(input.Length);
            await _stream.CopyAsync(input.Memory, _deviceInput);          // -> GPU: DMA (best) or staged pageable copy (typical)
        }
        finally
        {
            if (!best)
            {
                input.Dispose();
            }
        }

        _deviceOutput ??= _device.Allocate(stage.OutputBytes);
        double inputMs = StageTimes.Ms(t0);

        long t1 = Stopwatch.GetTimestamp();
        await Stage.ComputeAsync(_stream, _deviceInput, _deviceOutput, salt);
        double computeMs = StageTimes.Ms(t1);

        long t2 = Stopwatch.GetTimestamp();
        var output = best
            ? _output ??= HostRegion.Create(stage.OutputBytes, deleteOnDispose: true).Register(_device)
            : HostRegion.Create(stage.OutputBytes, deleteOnDispose: false);  // a new object per request; the gateway deletes it
        await _stream.CopyAsync(_deviceOutput, output.Memory);              // GPU -> shared memory for the next stage
        string reference = output.Path;
        if (!best)
        {
            output.Dispose();
        }

        return $"{reference} {new StageTimes(inputMs, computeMs, StageTimes.Ms(t2))}";
    }

    private HostRegion InputRegion(string path)
    {
        if (!_inputs.TryGetValue(path, out var region))
        {
            _inputs[path] = region = HostRegion.Open(path).Register(_device);
        }

        return region;
    }

    public void Dispose()
    {
        foreach (var region in _inputs.Values)
        {
            region.Dispose();
        }

        _output?.Dispose();
        _deviceInput?.Dispose();
        _deviceOutput?.Dispose();
        _stream.Dispose();
    }
}
