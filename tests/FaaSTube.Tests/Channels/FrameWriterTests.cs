using System.IO.Pipelines;
using FaaSTube.Channels.Protocol;
using FaaSTube.Kernels;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>The one writer of a connection: frames from many threads never interleave, and closing never hangs.</summary>
[TestClass]
public sealed class FrameWriterTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task Frames_sent_from_many_threads_arrive_whole_and_each_exactly_once()
    {
        var random = Seeds.Create(TestContext);
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 64 << 10, resumeWriterThreshold: 32 << 10));
        var writer = new FrameWriter(pipe.Writer, transport: null);
        var payloads = Enumerable.Range(1, 200).Select(i => random.Bytes(random.Next(0, 20_000))).ToArray();

        var received = new Dictionary<uint, byte[]>();
        var reading = Task.Run(async () =>
        {
            while (await Frames.ReadAsync(pipe.Reader, 1 << 20, CancellationToken.None) is { } f)
            {
                Assert.AreEqual(FrameType.PutPart, f.Type);
                Assert.IsTrue(received.TryAdd(f.RequestId, f.Payload), $"request {f.RequestId} arrived twice");
            }
        });
        await Parallel.ForEachAsync(Enumerable.Range(0, payloads.Length), new ParallelOptions { MaxDegreeOfParallelism = 8 },
            async (i, ct) => await writer.SendAsync(FrameType.PutPart, (uint)i + 1, payloads[i], ct));
        await pipe.Writer.CompleteAsync();
        await reading.WaitAsync(ChildProcess.Timeout);

        Assert.AreEqual(payloads.Length, received.Count);
        for (int i = 0; i < payloads.Length; i++)
        {
            Assert.AreEqual(DataChecksum.Compute(payloads[i]), DataChecksum.Compute(received[(uint)i + 1]), $"frame {i + 1}");
        }
    }

    [TestMethod]
    public async Task Closing_while_writes_are_blocked_on_a_peer_that_stopped_reading_ends_every_write()
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 16 << 10, resumeWriterThreshold: 8 << 10)); // nobody reads
        var transport = new DisposeCounter();
        var writer = new FrameWriter(pipe.Writer, transport);
        var sends = Enumerable.Range(1, 6).Select(i => writer.SendAsync(FrameType.PutPart, (uint)i, new byte[32 << 10], CancellationToken.None).AsTask()).ToArray();
        Assert.IsFalse(sends.All(s => s.IsCompleted), "the first write fills the pipe and waits for a reader");

        await writer.CompleteAsync().AsTask().WaitAsync(ChildProcess.Timeout);
        await writer.CompleteAsync(); // again: nothing happens

        foreach (var send in sends)
        {
            var error = await Assert.ThrowsAsync<ObjectDisposedException>(() => send.WaitAsync(ChildProcess.Timeout));
            StringAssert.Contains(error.Message, "closed");
        }

        Assert.AreEqual(1, transport.Disposals);
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await writer.SendAsync(FrameType.Where, 9, new byte[1], CancellationToken.None));
    }

    [TestMethod]
    public async Task A_send_cancelled_while_waiting_for_its_turn_writes_nothing_and_later_sends_still_work()
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 16 << 10, resumeWriterThreshold: 8 << 10));
        var writer = new FrameWriter(pipe.Writer, transport: null);
        var first = writer.SendAsync(FrameType.PutPart, 1, new byte[32 << 10], CancellationToken.None).AsTask(); // fills the pipe
        using var cts = new CancellationTokenSource();
        var second = writer.SendAsync(FrameType.PutPart, 2, new byte[100], cts.Token).AsTask(); // waits for the lock
        Assert.IsFalse(first.IsCompleted || second.IsCompleted);

        await cts.CancelAsync();
        await Assert.ThrowsAsync<OperationCanceledException>(() => second.WaitAsync(ChildProcess.Timeout), "the caller's cancellation, not a closed connection");

        var reading = Task.Run(async () =>
        {
            var ids = new List<uint>();
            while (await Frames.ReadAsync(pipe.Reader, 1 << 20, CancellationToken.None) is { } f)
            {
                ids.Add(f.RequestId);
            }

            return ids;
        });
        await first.WaitAsync(ChildProcess.Timeout);
        await writer.SendAsync(FrameType.Where, 3, new byte[16], CancellationToken.None);
        await writer.CompleteAsync();

        CollectionAssert.AreEqual(new uint[] { 1, 3 }, await reading.WaitAsync(ChildProcess.Timeout), "frame 2 was never written");
    }

    private sealed class DisposeCounter : IDisposable
    {
        public int Disposals { get; private set; }

        public void Dispose() => Disposals++;
    }
}
