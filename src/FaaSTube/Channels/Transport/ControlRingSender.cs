using FaaSTube.Channels.Protocol;

namespace FaaSTube.Channels.Transport;

/// <summary>
/// The outgoing side of a control ring for async code, in order: a frame goes straight into the
/// ring when nothing waits before it and there is room (no syscall, no thread hop); otherwise it
/// joins a queue that one drain task empties, waiting for room at most <see cref="_timeout"/> per
/// frame. Frames therefore leave in the order <see cref="Send"/> was called (one-way requests and
/// a later Sync keep their order), and no caller ever blocks. A peer that stops reading makes the
/// drain time out: <see cref="_stuck"/> is told (the session or connection is then closed), and
/// queued frames are dropped.
/// </summary>
internal sealed class ControlRingSender(ControlRing ring, TimeSpan timeout, Action<Exception> stuck)
{
    private readonly TimeSpan _timeout = timeout;
    private readonly Action<Exception> _stuck = stuck;
    private readonly Queue<(FrameType Type, uint RequestId, byte[] Payload)> _queue = new();
    private readonly Lock _sync = new();
    private bool _draining;
    private bool _failed;

    /// <summary>Sends a frame, now or after those queued before it. <see cref="ObjectDisposedException"/> once the ring is closed or failed.</summary>
    public void Send(FrameType type, uint requestId, ReadOnlySpan<byte> payload)
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_failed, this);
            if (!_draining && ring.TrySend(type, requestId, payload))
            {
                return;
            }

            _queue.Enqueue((type, requestId, payload.ToArray()));
            if (_draining)
            {
                return;
            }

            _draining = true;
        }

        _ = Task.Run(Drain);
    }

    /// <summary>Empties the queue on a pool thread, which blocks only while the ring is full (bounded by the timeout).</summary>
    private void Drain()
    {
        while (true)
        {
            (FrameType Type, uint RequestId, byte[] Payload) next;
            lock (_sync)
            {
                if (!_queue.TryPeek(out next))
                {
                    _draining = false;
                    return;
                }
            }

            try
            {
                ring.Send(next.Type, next.RequestId, next.Payload, _timeout);
            }
            catch (Exception e)
            {
                lock (_sync)
                {
                    _failed = true;
                    _queue.Clear();
                    _draining = false;
                }

                _stuck(e);
                return;
            }

            lock (_sync)
            {
                _queue.Dequeue();
            }
        }
    }
}
