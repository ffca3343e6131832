using FaaSTube.Channels;
using FaaSTube.Kernels;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// A loader process killed mid-load (tests/FaaSTube.TestChild, <c>tube-load-hang</c>): the node ties
/// the load to the loader's session, so the session's end fails it; the waiters wake with
/// <see cref="TubeError.LoadFailed"/>, the next caller loads, and the half-written version is freed.
/// </summary>
[TestClass]
public sealed class NamedLoaderKillTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task A_loader_killed_mid_load_wakes_its_waiters_and_the_next_caller_loads()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var waiter = await h.ConnectAsync(inProcess: false);
        var next = await h.ConnectAsync(inProcess: false);
        const int Length = 8 << 20;
        var data = random.Bytes(Length);
        int loads = 0;
        var loader = NamedLoader.FromBytes(_ =>
        {
            Interlocked.Increment(ref loads);
            return ValueTask.FromResult<ReadOnlyMemory<byte>>(data);
        });
        var waiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Node.Names.WaiterArrived += _ => waiting.TrySetResult();

        using var child = ChildProcess.Start("tube-load-hang", h.Socket, "wf", "llm", Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.AreEqual("loading", await child.ReadLineAsync(), "the child's loader has sent its first part");
        var waited = Task.Run(() => waiter.GetOrLoadAsync("llm", loader));
        await waiting.Task.WaitAsync(ChildProcess.Timeout); // the waiter waits on the node for the child's load
        var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Node.SessionEnded += _ => ended.TrySetResult(); // only the child's session ends here
        await child.KillAsync();

        var woken = await Assert.ThrowsAsync<TubeException>(async () => await waited);
        Assert.AreEqual(TubeError.LoadFailed, woken.Error);
        StringAssert.Contains(woken.Message, "connection ended");
        Assert.AreEqual(0, Volatile.Read(ref loads), "the waiter did not load");
        await ended.Task.WaitAsync(ChildProcess.Timeout);

        await using (var loaded = await next.GetOrLoadAsync("llm", loader))
        {
            using var stream = loaded.Device.CreateStream();
            Assert.AreEqual(DataChecksum.Compute(data), await stream.ChecksumAsync(loaded.Memory));
        }

        Assert.AreEqual(1, Volatile.Read(ref loads), "the next caller loaded, once");
        await next.DeleteNamedAsync("llm");
        await next.FlushAsync();
        Assert.AreEqual(0L, h.Node.PoolOf(0).GetStatistics().InUseBytes, "neither the killed loader's half version nor the deleted one is left");
    }

}
