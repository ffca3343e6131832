using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// Function code that brings its own GPU work: it runs on a stream the library did not create, the
/// library wraps that stream, and a publish after it waits for the work (on the simulated GPU the
/// wrapped stream's marker plays CUDA's recorded event). The CUDA twin is <see cref="CudaForeignKernelTests"/>.
/// </summary>
[TestClass]
public sealed class ForeignStreamPublishTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task A_publish_after_work_on_a_wrapped_stream_waits_for_that_work_and_a_consumer_process_sees_it_whole()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var producer = await h.ConnectAsync(inProcess: false);
        long length = (6L << 20) + random.Next(1, 4096);
        ulong seed = (ulong)random.NextInt64(1, long.MaxValue);
        var output = await producer.AllocateAsync(length);
        var machine = ((SimulatedGpuDevice)output.Device).Machine;
        ulong address = output.Memory.Address;
        using var gate = new ManualResetEventSlim();
        var running = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        machine.OnExecute = op =>
        {
            if (op.Kind == StreamOpKind.FillPattern && op.Destination.Address == address)
            {
                running.TrySetResult(); // the "kernel" is on the device: hold it there until the test lets go
                if (!gate.Wait(ChildProcess.Timeout))
                {
                    throw new TimeoutException("The test never released the held kernel.");
                }
            }
        };

        try
        {
            // Elsewhere: the function's framework made this stream and enqueues its kernel on it.
            using var framework = output.Device.CreateStream();
            var kernel = framework.FillPatternAsync(output.Memory, seed);
            await running.Task.WaitAsync(ChildProcess.Timeout);

            using var wrapped = output.Device.WrapStream(framework.NativeHandle);
            var publish = producer.PublishAsync(output, wrapped);
            await producer.FlushAsync(); // whatever the producer has posted by now, the node has applied

            Assert.IsFalse(publish.IsCompleted, "the publish waits for the work on the wrapped stream");
            Assert.IsTrue(h.Node.Directory.TryFind("wf", output.Id) is { Committed: false, Removed: false },
                "the node has not made the data visible while the stream's work runs");

            ulong expected = PoolHarness.Expected(length, seed);
            using var consumer = ChildProcess.Start("tube-get", h.Socket, "wf", output.Id.ToString(), "0", expected.ToString());
            gate.Set();
            Assert.AreEqual(output.Id, await publish);
            await kernel;
            var (exit, text) = await consumer.WaitAsync();
            Assert.AreEqual(0, exit, text);
            Assert.AreEqual("ok", text.Trim());
        }
        finally
        {
            machine.OnExecute = null;
            gate.Set();
        }
    }
}
