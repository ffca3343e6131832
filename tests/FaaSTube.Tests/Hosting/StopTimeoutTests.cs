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
        try
        {
            var stopping = h.Node.StopAsync(); // no token: only the node's own StopTimeout bounds it
            h.Clock.Advance(TimeSpan.FromSeconds(29));
            Assert.IsFalse(stopping.IsCompleted, "within the stop timeout the call in flight is waited for");
            Assert.IsFalse(flush.IsCompleted);

            h.Clock.Advance(TimeSpan.FromSeconds(2)); // past it: the session is ended, the client told
            var failed = await Assert.ThrowsAsync<TubeNodeUnavailableException>(() => flush.WaitAsync(TimeSpan.FromSeconds(60)));
            Assert.AreEqual(FaaSTubeErrorCode.NodeUnavailable, failed.Code);
            gate.Set(); // the request's thread comes back; the stop completes
            await stopping.WaitAsync(TimeSpan.FromSeconds(60));
        }
        finally
        {
            gate.Set(); // whatever failed above, the held thread is let go so the node can be disposed
        }
    }
}
