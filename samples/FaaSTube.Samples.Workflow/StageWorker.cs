using System.Diagnostics;
using FaaSTube.Channels;
using FaaSTube.Devices;

namespace FaaSTube.Samples.Workflow;

/// <summary>
/// A stage as a function: it runs in a process of its own (or as a task, in-process mode) and
/// serves requests "run tube|host ...". Through FaaSTube its input arrives as a mapped pool buffer
/// (zero copy) and its output is written in place and published. Through host memory (the INFless
/// baseline) its input is a shared-memory file copied to the GPU, and its output is copied back to
/// a new file: two PCIe crossings per hop.
/// </summary>
internal sealed class StageWorker(TubeClient client, Stage stage)
{
    private readonly GpuStream _stream = client.Gpus.Devices[0].CreateStream();

    /// <summary>tube &lt;input-id&gt; &lt;salt&gt; &lt;consumers&gt; -> "&lt;output-id&gt; times"; host &lt;input-file&gt; &lt;salt&gt; -> "&lt;output-file&gt; times".</summary>
    public async Task<string> RunAsync(string[] request)
    {
        ulong salt = ulong.Parse(request[2]);
        return request[0] == "tube"
            ? await ThroughTubeAsync(TubeId.Parse(request[1]), salt, int.Parse(request[3]))
            : await ThroughHostAsync(request[1], salt);
    }

    private async Task<string> ThroughTubeAsync(TubeId input, ulong salt, int consumers)
    {
        long t0 = Stopwatch.GetTimestamp();
        await using var source = await client.GetAsync(input);          // zero copy: the producer's pool memory, mapped
        var output = await client.AllocateAsync(stage.OutputBytes);      // pool memory to write in place
        double inputMs = StageTimes.Ms(t0);

        long t1 = Stopwatch.GetTimestamp();
        await Stage.ComputeAsync(_stream, source.Memory, output.Memory, salt);
        double computeMs = StageTimes.Ms(t1);

        long t2 = Stopwatch.GetTimestamp();
        var id = await client.PublishAsync(output, _stream, new PutOptions { Consumers = consumers });
        return $"{id} {new StageTimes(inputMs, computeMs, StageTimes.Ms(t2))}";
    }

    private async Task<string> ThroughHostAsync(string inputFile, ulong salt)
    {
        var device = client.Gpus.Devices[0];
        long t0 = Stopwatch.GetTimestamp();
        var bytes = await File.ReadAllBytesAsync(inputFile);               // host shared memory -> this process
        using var input = device.Allocate(bytes.Length);
        await _stream.CopyAsync(bytes, input);                             // -> GPU (pageable)
        using var output = device.Allocate(stage.OutputBytes);
        double inputMs = StageTimes.Ms(t0);

        long t1 = Stopwatch.GetTimestamp();
        await Stage.ComputeAsync(_stream, input, output, salt);
        double computeMs = StageTimes.Ms(t1);

        long t2 = Stopwatch.GetTimestamp();
        var result = new byte[stage.OutputBytes];
        await _stream.CopyAsync(output, result.AsMemory());                // GPU -> host
        string outputFile = HostFiles.Write(result);                      // -> shared memory for the next stage
        return $"{outputFile} {new StageTimes(inputMs, computeMs, StageTimes.Ms(t2))}";
    }
}

/// <summary>The baseline's intermediate files in /dev/shm (pageable shared memory, as host-memory FaaS platforms pass data).</summary>
internal static class HostFiles
{
    public static string Write(byte[] data)
    {
        string path = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), $"faastube-sample.{Environment.ProcessId}.{Guid.NewGuid():N}");
        File.WriteAllBytes(path, data);
        return path;
    }

    public static void Delete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Already gone.
        }
    }
}
