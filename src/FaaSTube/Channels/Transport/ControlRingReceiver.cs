using System.Threading.Channels;

namespace FaaSTube.Channels.Transport;

/// <summary>
/// The async face of a control ring's incoming side: one dedicated thread blocks in
/// <see cref="ControlRing.Receive"/> (spin, then futex sleep: no CPU while idle) and hands each frame
/// to <see cref="Frames"/>, a bounded channel async code awaits. Chosen because it is the simplest
/// that blocks no thread-pool thread: a futex wait cannot be awaited, and a pool thread parked per
/// session would starve the pool under many sessions; the channel costs one hand-off per frame. When
/// the channel is full the thread waits, the ring fills and the peer's Send waits: back-pressure
/// reaches the producer. A violation completes the channel with the <see cref="InvalidDataException"/>
/// (<see cref="ReadAsync"/> throws it as it is); <see cref="Dispose"/> completes it without one.
/// </summary>
internal sealed class ControlRingReceiver : IDisposable
{
    private readonly ControlRing _ring;
    private readonly int _maxPayloadBytes;
    private readonly Channel<ControlFrame> _frames;
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _thread;
    private int _disposed;

    /// <summary>Starts the receiving thread; it owns no ring: dispose the ring after this.</summary>
    public ControlRingReceiver(ControlRing ring, int maxPayloadBytes, int queuedFrames = 64, string name = "faastube-control-ring")
    {
        _ring = ring;
        _maxPayloadBytes = maxPayloadBytes;
        _frames = Channel.CreateBounded<ControlFrame>(new BoundedChannelOptions(queuedFrames) { SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>The frames, in order.</summary>
    public ChannelReader<ControlFrame> Frames => _frames.Reader;

    /// <summary>The next frame; the <see cref="InvalidDataException"/> of a violation as it is; <see cref="ChannelClosedException"/> once stopped.</summary>
    public async ValueTask<ControlFrame> ReadAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            return await _frames.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException e) when (e.InnerException is { } cause)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(cause).Throw();
            throw;
        }
    }

    /// <summary>Stops the thread (it is woken at once) and waits for it to leave the ring.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stop.Cancel();
        _thread.Join();
        _stop.Dispose();
    }

    private void Run()
    {
        var writer = _frames.Writer;
        try
        {
            while (true)
            {
                var frame = _ring.Receive(_maxPayloadBytes, Timeout.InfiniteTimeSpan, _stop.Token);
                if (!writer.TryWrite(frame))
                {
                    writer.WriteAsync(frame, _stop.Token).AsTask().GetAwaiter().GetResult(); // a full channel: wait on this thread
                }
            }
        }
        catch (InvalidDataException e)
        {
            writer.TryComplete(e);
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or ChannelClosedException)
        {
            writer.TryComplete();
        }
        catch (Exception e)
        {
            writer.TryComplete(e); // never lost on a thread of our own
        }
    }
}
