using FaaSTube.Channels;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Hosting;

/// <summary>A client cannot hold the node's graceful stop longer than <see cref="TubeNodeOptions.StopTimeout"/>.</summary>
[TestClass]
public sealed class StopTimeoutTests
{
    /// <summary>
    /// Over the socket. (A control ring's requests run on the ring's own thread, which the held request
    /// here would block; a ring client that stops taking its answers is ended by
    /// <see cref="TubeNodeOptions.StalledClientTimeout"/> instead: ControlRingTests.)
    /// </summary>
    [TestMethod]
    public async Task A_stop_without_a_deadline_of_its_own_ends_the_sessions_once_the_stop_timeout_passes()
    {
        await using var h = await NodeHarness.StartAsync(configure: o => o.StopTimeout = TimeSpan.FromSeconds(30));
        var client = await h.ConnectAsync(inProcess: false, controlRingBytes: 0);
        await client.FlushAsync();

        // The next request the node starts stays in flight (as one whose answer a client never takes would).
        using var gate = new ManualResetEventSlim();
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int armed = 1;
        h.Node.RequestStarted += _ =>
        {
            if (Interlocked.Exchange(ref armed, 0) == 1)
            {
                held.TrySetResult();
                gate.Wait();
            }
        };
        var flush = client.FlushAsync();
        await held.Task;
        var session = h.Node.Sessions.Single();
        var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var registration = session.Ended.Register(() => ended.TrySetResult());
        try
        {
            var stopping = h.Node.StopAsync(); // no token: only the node's own StopTimeout bounds it
            h.Clock.Advance(TimeSpan.FromSeconds(29));
            Assert.IsFalse(stopping.IsCompleted, "within the stop timeout the call in flight is waited for");
            Assert.IsFalse(ended.Task.IsCompleted, "and its session goes on");

            h.Clock.Advance(TimeSpan.FromSeconds(2)); // past it: the node ends the session without waiting for the call
            await ended.Task.WaitAsync(TimeSpan.FromSeconds(60));
            Assert.IsFalse(flush.IsCompletedSuccessfully, "the call in flight was not answered before its session ended");
            gate.Set(); // the request's thread comes back; the stop completes
            await stopping.WaitAsync(TimeSpan.FromSeconds(60));
            try
            {
                await flush.WaitAsync(TimeSpan.FromSeconds(60)); // answered, or failed with the connection: either way it ends
            }
            catch (FaaSTubeException)
            {
            }

            Assert.IsTrue(flush.IsCompleted, "the client's call ends with its session");
        }
        finally
        {
            gate.Set(); // whatever failed above, the held thread is let go so the node can be disposed
        }
    }
}
