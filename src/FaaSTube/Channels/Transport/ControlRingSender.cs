using System.Diagnostics;
using FaaSTube.Channels.Protocol;

namespace FaaSTube.Channels.Transport;

/// <summary>
/// The outgoing side of a control ring for async code, in order and bounded. A frame goes straight
/// into the ring when nothing waits before it and there is room (no syscall, no thread hop); else it
/// joins a queue, and its <see cref="SendAsync"/> completes only once it is in the ring, so whoever
/// awaits it (the node's request, holding its request slot) pushes back on the peer. The queue is
/// emptied by one drain task that polls for room (1 ms, doubling to 10 ms: it never blocks a
/// thread-pool thread). At most <see cref="_maxQueued"/> frames wait; and a peer that leaves the
/// ring backed up for <see cref="_stallTimeout"/> is stuck: <see cref="_stuck"/> is told (the
/// session or connection is then closed) and every waiting frame fails with
/// <see cref="ObjectDisposedException"/>. The node counts from the moment the ring first filled,
/// however the client trickles (its requests' slots already bound what waits); the client counts
/// from the node's last progress (<paramref name="fromLastProgress"/>), since a busy client may keep
/// the node's ring full for as long as it likes while every call is answered quickly.
/// </summary>
internal sealed class ControlRingSender(ControlRing ring, TimeSpan stallTimeout, int maxQueued, Action<Exception> stuck, bool fromLastProgress = false)
{
    private readonly TimeSpan _stallTimeout = stallTimeout;
    private readonly int _maxQueued = maxQueued;
    private readonly Action<Exception> _stuck = stuck;
    private readonly Queue<Pending> _queue = new();
    private readonly Lock _sync = new();
    private bool _draining;
    private bool _failed;

    /// <summary>Frames waiting for room now.</summary>
    internal int Queued
    {
        get
        {
            lock (_sync)
            {
                return _queue.Count;
            }
        }
    }

    /// <summary>
    /// Sends a frame, now or after those queued before it; completes once it is in the ring.
    /// <see cref="ObjectDisposedException"/> once the ring is closed or the peer was found stuck;
    /// <see cref="InvalidDataException"/> if the peer corrupted the ring's counters.
    /// </summary>
    public ValueTask SendAsync(FrameType type, uint requestId, ReadOnlySpan<byte> payload)
    {
        Pending pending;
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_failed, this);
            if (!_draining && ring.TrySend(type, requestId, payload))
            {
                return default;
            }

            if (_queue.Count >= _maxQueued)
            {
                var over = new TimeoutException($"More than {_maxQueued} frames wait for room in the control ring: the peer does not read.");
                FailLocked();
                _ = Task.Run(() => _stuck(over));
                throw new ObjectDisposedException("The control ring's peer was found stuck.", over);
            }

            pending = new Pending(type, requestId, payload.ToArray());
            _queue.Enqueue(pending);
            if (!_draining)
            {
                _draining = true;
                _ = DrainAsync(Stopwatch.GetTimestamp());
            }
        }

        return new ValueTask(pending.Sent.Task);
    }

    /// <summary>Moves queued frames into the ring as the peer makes room; fails them all when it does not in time.</summary>
    private async Task DrainAsync(long backedUpSince)
    {
        var delay = TimeSpan.FromMilliseconds(1);
        while (true)
        {
            Exception? failure = null;
            lock (_sync)
            {
                if (_failed)
                {
                    return;
                }

                try
                {
                    while (_queue.TryPeek(out var next) && ring.TrySend(next.Type, next.RequestId, next.Payload))
                    {
                        _queue.Dequeue().Sent.TrySetResult();
                        delay = TimeSpan.FromMilliseconds(1);
                        if (fromLastProgress)
                        {
                            backedUpSince = Stopwatch.GetTimestamp();
                        }
                    }

                    if (_queue.Count == 0)
                    {
                        _draining = false;
                        return;
                    }

                    if (Stopwatch.GetElapsedTime(backedUpSince) > _stallTimeout)
                    {
                        failure = new TimeoutException($"The control ring's peer left it full for {_stallTimeout.TotalSeconds:0.###} s.");
                    }
                }
                catch (Exception e)
                {
                    failure = e; // corrupt counters, or the ring was closed
                }

                if (failure is not null)
                {
                    FailLocked();
                }
            }

            if (failure is not null)
            {
                _stuck(failure);
                return;
            }

            await Task.Delay(delay).ConfigureAwait(false);
            delay = delay * 2 < TimeSpan.FromMilliseconds(10) ? delay * 2 : TimeSpan.FromMilliseconds(10);
        }
    }

    /// <summary>The connection is closing: every waiting frame fails now (their requests let go of their slots), every later one at once.</summary>
    public void Close()
    {
        lock (_sync)
        {
            FailLocked();
        }
    }

    /// <summary>Refuses every later frame and fails the waiting ones. Call under <see cref="_sync"/>.</summary>
    private void FailLocked()
    {
        _failed = true;
        _draining = false;
        while (_queue.TryDequeue(out var pending))
        {
            pending.Sent.TrySetException(new ObjectDisposedException("The control ring's peer was found stuck."));
        }
    }

    private sealed record Pending(FrameType Type, uint RequestId, byte[] Payload)
    {
        public TaskCompletionSource Sent { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
