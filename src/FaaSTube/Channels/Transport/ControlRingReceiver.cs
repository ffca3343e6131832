namespace FaaSTube.Channels.Transport;

/// <summary>
/// The incoming side of a control ring: one dedicated thread blocks in <see cref="ControlRing.Receive"/>
/// (spin, then futex sleep: no CPU while idle) and hands each frame to the handler <b>on that
/// thread</b>, so a request or an answer is dealt with without another thread hop (each hop is a
/// wake-up of its own, the cost that dominates a control call). The handler must not run long: the
/// node's takes a request slot (waiting there is the ring's back-pressure: the ring fills and the
/// peer's sends wait), runs what completes at once (Where, Publish, Release, Sync) in place and lets
/// the rest continue on the thread pool; the client's completes the pending call, whose continuation
/// runs on the pool. A futex wait cannot be awaited, and parking a pool thread per session would
/// starve the pool: hence a thread of its own. A violation ends the thread with the
/// <see cref="InvalidDataException"/> passed to the end handler; <see cref="Dispose"/> ends it with null.
/// </summary>
internal sealed class ControlRingReceiver : IDisposable
{
    private readonly ControlRing _ring;
    private readonly int _maxPayloadBytes;
    private readonly Action<ControlFrame, CancellationToken> _onFrame;
    private readonly Action<Exception?> _onEnd;
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _thread;
    private int _disposed;

    /// <summary>Starts the receiving thread; it owns no ring: dispose the ring after this.</summary>
    /// <param name="ring">The ring to read.</param>
    /// <param name="maxPayloadBytes">Longer payloads are a violation.</param>
    /// <param name="onFrame">Each frame, in order, on the receiving thread; the token is cancelled by <see cref="Dispose"/>.</param>
    /// <param name="onEnd">Once, on the receiving thread, when it stops: the violation or failure, or null when disposed.</param>
    /// <param name="name">The thread's name.</param>
    public ControlRingReceiver(ControlRing ring, int maxPayloadBytes, Action<ControlFrame, CancellationToken> onFrame, Action<Exception?> onEnd, string name = "faastube-control-ring")
    {
        _ring = ring;
        _maxPayloadBytes = maxPayloadBytes;
        _onFrame = onFrame;
        _onEnd = onEnd;
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>Stops the thread (it is woken at once) and waits for it to leave the ring, unless called on that thread.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stop.Cancel();
        if (Thread.CurrentThread != _thread)
        {
            _thread.Join();
        }
    }

    private void Run()
    {
        Exception? end = null;
        try
        {
            while (true)
            {
                var frame = _ring.Receive(_maxPayloadBytes, Timeout.InfiniteTimeSpan, _stop.Token);
                _onFrame(frame, _stop.Token);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException && _stop.IsCancellationRequested)
        {
            // Disposed.
        }
        catch (Exception e)
        {
            end = e; // a violation, or the handler's failure: never lost on a thread of our own
        }

        try
        {
            _onEnd(end);
        }
        catch (Exception)
        {
            // The end handler only records; nothing may end the process from here.
        }
    }
}
