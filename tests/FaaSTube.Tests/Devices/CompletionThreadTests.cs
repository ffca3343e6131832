using FaaSTube.Devices.Completion;

namespace FaaSTube.Tests.Devices;

/// <summary>The completion thread behind CUDA streams, driven by scripted operations (no GPU needed).</summary>
[TestClass]
public sealed class CompletionThreadTests
{
    [TestMethod]
    public async Task A_failing_wait_fails_only_its_own_operation_and_later_ones_still_complete()
    {
        using var thread = new CompletionThread<Scripted>("test completions");
        var before = new Scripted();
        var failing = new Scripted { Failure = new InvalidOperationException("CUDA_ERROR_LAUNCH_FAILED (scripted)") };
        var after = new Scripted();

        thread.Add(before);
        thread.Add(failing);
        thread.Add(after);

        await before.Done.Task;
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => failing.Done.Task);
        Assert.AreSame(failing.Failure, error);
        await after.Done.Task;
    }

    [TestMethod]
    public async Task An_operation_whose_finish_throws_does_not_stop_the_thread()
    {
        using var thread = new CompletionThread<Scripted>("test completions");
        var throwing = new Scripted { FinishThrows = true };
        var next = new Scripted();

        thread.Add(throwing);
        thread.Add(next);

        await next.Done.Task;
    }

    [TestMethod]
    public async Task A_burst_of_operations_completes_in_issue_order_without_overflowing_the_signal()
    {
        // A counting semaphore would have to hold one count per operation issued while the thread
        // was busy; the one-bit signal cannot overflow whatever the burst.
        const int Count = 200_000;
        var gate = new ManualResetEventSlim(false);
        using var thread = new CompletionThread<Scripted>("test completions");
        var first = new Scripted { Gate = gate };
        thread.Add(first);
        var order = new System.Collections.Concurrent.ConcurrentQueue<int>();
        var items = Enumerable.Range(0, Count).Select(i => new Scripted { OnFinish = () => order.Enqueue(i) }).ToArray();
        foreach (var item in items)
        {
            thread.Add(item); // all issued while the first op is still running
        }

        Assert.IsTrue(thread.Pending >= Count, "the burst was issued while the thread was busy");
        gate.Set();

        await items[^1].Done.Task;
        CollectionAssert.AreEqual(Enumerable.Range(0, Count).ToArray(), order.ToArray());
    }

    [TestMethod]
    public async Task Dispose_completes_what_was_issued_then_runs_the_cleanup_once()
    {
        var gate = new ManualResetEventSlim(false);
        var cleaned = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int cleanups = 0;
        var thread = new CompletionThread<Scripted>("test completions", () =>
        {
            Interlocked.Increment(ref cleanups);
            cleaned.SetResult();
        });
        var pending = new Scripted { Gate = gate };
        thread.Add(pending);

        thread.Dispose();
        Assert.ThrowsExactly<ObjectDisposedException>(() => thread.Add(new Scripted()));
        Assert.IsFalse(cleaned.Task.IsCompleted, "cleanup ran before the issued op completed");
        gate.Set();

        await pending.Done.Task;
        await cleaned.Task;
        Assert.AreEqual(1, cleanups);
    }

    private sealed class Scripted : IDeviceCompletion
    {
        public Exception? Failure { get; init; }

        public bool FinishThrows { get; init; }

        public ManualResetEventSlim? Gate { get; init; }

        public Action? OnFinish { get; init; }

        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void WaitForDevice()
        {
            Gate?.Wait();
            if (Failure is not null)
            {
                throw Failure;
            }
        }

        public void Finish(Exception? error)
        {
            OnFinish?.Invoke();
            if (error is null)
            {
                Done.SetResult();
            }
            else
            {
                Done.SetException(error);
            }

            if (FinishThrows)
            {
                throw new InvalidOperationException("a completion that throws (scripted)");
            }
        }
    }
}
