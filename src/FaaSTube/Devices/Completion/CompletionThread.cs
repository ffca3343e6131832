using System.Collections.Concurrent;

namespace FaaSTube.Devices.Completion;

/// <summary>
/// A dedicated thread that completes a stream's operations in issue order: it blocks in
/// <see cref="IDeviceCompletion.WaitForDevice"/> (a blocking-sync CUDA event sleeps in the driver), so
/// waiting costs no CPU, and a stream's operations finish in order, so waiting on the oldest never
/// delays a younger one. An operation whose wait throws fails alone with that exception; the thread
/// survives anything an item does. The wake-up signal is one bit beside a queue, so it cannot
/// overflow however many operations are issued while the thread is busy.
/// </summary>
internal sealed class CompletionThread<T> : IDisposable
    where T : class, IDeviceCompletion
{
    private readonly ConcurrentQueue<T> _queue = new();
    private readonly object _lock = new();
    private readonly Thread _thread;
    private readonly Action? _stopped;
    private bool _signalled;
    private bool _stopping;

    /// <param name="name">The thread's name (seen in debuggers and dumps).</param>
    /// <param name="stopped">Runs on the thread after the last item completed, once disposed (frees what the items used).</param>
    public CompletionThread(string name, Action? stopped = null)
    {
        _stopped = stopped;
        _thread = new Thread(Run, maxStackSize: 256 << 10) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>Operations issued and not yet completed (for tests and diagnostics).</summary>
    public int Pending => _queue.Count;

    /// <summary>Completes <paramref name="item"/> once the device has finished it (after every item added before it).</summary>
    /// <exception cref="ObjectDisposedException">The thread was stopped.</exception>
    public void Add(T item)
    {
        if (!TryAdd(item))
        {
            throw new ObjectDisposedException(GetType().Name, "The completion thread was stopped.");
        }
    }

    /// <summary>As <see cref="Add"/>; false, leaving <paramref name="item"/> to the caller, once the thread was stopped.</summary>
    public bool TryAdd(T item)
    {
        lock (_lock)
        {
            if (_stopping)
            {
                return false;
            }

            _queue.Enqueue(item);
            if (!_signalled)
            {
                _signalled = true;
                Monitor.Pulse(_lock);
            }

            return true;
        }
    }

    /// <summary>Waits for <paramref name="item"/> on the calling thread and completes it (an op issued while its stream was being disposed).</summary>
    public static void CompleteInline(T item) => Complete(item);

    /// <summary>Stops the thread once every item added so far has completed; returns at once.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _stopping = true;
            _signalled = true;
            Monitor.Pulse(_lock);
        }
    }

    private void Run()
    {
        while (!DrainThenWait())
        {
        }

        try
        {
            _stopped?.Invoke();
        }
        catch (Exception)
        {
            // Nothing waits for the cleanup; an error in it must not end the process.
        }
    }

    /// <summary>Completes what is queued, then sleeps until signalled; true once stopping with nothing left.</summary>
    private bool DrainThenWait()
    {
        while (_queue.TryDequeue(out var item))
        {
            Complete(item);
        }

        lock (_lock)
        {
            while (!_signalled && !_stopping)
            {
                Monitor.Wait(_lock);
            }

            _signalled = false;
            return _stopping && _queue.IsEmpty;
        }
    }

    private static void Complete(T item)
    {
        Exception? error = null;
        try
        {
            item.WaitForDevice();
        }
        catch (Exception e)
        {
            error = e;
        }

        try
        {
            item.Finish(error);
        }
        catch (Exception)
        {
            // Finish must not throw; if it does, that one caller is the only one affected.
        }
    }
}
