using System.Diagnostics;

namespace FaaSTube.Samples.Workflow;

/// <summary>How the coordinator talks to a stage: a line in, a line out.</summary>
internal interface IStage : IAsyncDisposable
{
    Task<string> RunAsync(string request);
}

/// <summary>A stage in a child process of its own (this same program with --worker), over stdin/stdout.</summary>
internal sealed class StageProcess : IStage
{
    private readonly Process _process;
    private readonly SemaphoreSlim _one = new(1, 1);

    private StageProcess(Process process) => _process = process;

    public static async Task<StageProcess> StartAsync(string stage, string socket, string workflow, string backend)
    {
        var self = Environment.ProcessPath!;
        var info = new ProcessStartInfo(self) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            info.ArgumentList.Add(typeof(StageProcess).Assembly.Location);
        }

        foreach (var a in new[] { "--worker", stage, "--socket", socket, "--workflow", workflow, "--backend", backend })
        {
            info.ArgumentList.Add(a);
        }

        var process = Process.Start(info)!;
        var ready = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
        return ready == "ready" ? new StageProcess(process) : throw new InvalidOperationException($"The {stage} process did not start: {ready}");
    }

    public async Task<string> RunAsync(string request)
    {
        await _one.WaitAsync();
        try
        {
            await _process.StandardInput.WriteLineAsync(request);
            await _process.StandardInput.FlushAsync();
            var line = await _process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(120));
            return line ?? throw new InvalidOperationException("A stage process exited.");
        }
        finally
        {
            _one.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _process.StandardInput.Close();
        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        _process.Dispose();
    }
}

/// <summary>A stage as a task in this process, with an in-process client.</summary>
internal sealed class StageTask(StageWorker worker, IAsyncDisposable client) : IStage
{
    public Task<string> RunAsync(string request) => worker.RunAsync(request.Split(' '));

    public ValueTask DisposeAsync()
    {
        worker.Dispose();
        return client.DisposeAsync();
    }
}
