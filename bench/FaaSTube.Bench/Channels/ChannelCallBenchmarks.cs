using BenchmarkDotNet.Attributes;
using FaaSTube.Channels;

namespace FaaSTube.Bench.Channels;

/// <summary>
/// The control path: one call (Where) round trip, and Allocate + Publish + Get + Release of a small
/// block, in process and over the Unix socket (both clients in this process; the handoff scenario
/// puts the consumer in another process). Baseline: a bare 16-byte echo over the same transport
/// (<see cref="EchoLink"/>), the floor a call cannot go under on this machine.
/// </summary>
public class ChannelCallBenchmarks
{
    private TubeNode _node = null!;
    private TubeClient _client = null!;
    private TubeId _id;
    private EchoLink _echo = null!;

    [Params(true, false)]
    public bool InProcess { get; set; }

    [GlobalSetup]
    public void Setup() => SetupAsync().GetAwaiter().GetResult(); // BenchmarkDotNet's in-process toolchain does not await setups

    private async Task SetupAsync()
    {
        string socket = Path.Combine(Path.GetTempPath(), $"ft-bench-calls-{Environment.ProcessId}.sock");
        _node = await TubeNode.StartAsync(new TubeNodeOptions { SocketPath = socket });
        var options = new TubeClientOptions { SocketPath = socket, Workflow = "bench", Gpus = new() { Backend = _node.Gpus.Backend } };
        _client = InProcess ? await TubeClient.ConnectInProcessAsync(_node, options) : await TubeClient.ConnectAsync(options);
        _id = await _client.PutAsync(new byte[4096], new PutOptions { KeepUntilDeleted = true });
        _echo = InProcess ? EchoLink.OpenPipes() : await EchoLink.OpenSocketAsync(socket + ".echo");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _echo.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _client.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _node.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [Benchmark(Baseline = true)]
    public ValueTask EchoRoundTrip() => _echo.RoundTripAsync();

    [Benchmark]
    public Task<int> WhereRoundTrip() => _client.WhereAsync(_id);

    [Benchmark]
    public async Task AllocatePublishGetRelease()
    {
        var buffer = await _client.AllocateAsync(1 << 20);
        using var stream = buffer.Device.CreateStream();
        var id = await _client.PublishAsync(buffer, stream);
        await using var got = await _client.GetAsync(id);
    }
}
