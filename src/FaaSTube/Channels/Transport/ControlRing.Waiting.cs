using System.Diagnostics;
using FaaSTube.Native;

namespace FaaSTube.Channels.Transport;

/// <summary>
/// How a side of a control ring waits (for data, or for room): first a bounded spin
/// (<see cref="SpinTime"/>, SpinWait without Sleep(1)), which catches a peer that answers within
/// tens of microseconds without a syscall; then sleeps on its futex word with the remaining timeout
/// (ControlRingSleeper.cs). No core stays busy: the spin is bounded per call, and a peer that makes
/// the futex return at once, again and again without progress (by flipping the sleeper word the
/// memory shares), moves this wait to polling with a backoff that doubles up to 100 ms.
/// </summary>
internal sealed unsafe partial class ControlRing
{
    /// <summary>Futex returns without progress tolerated per wait before it falls back to polling (1, 2, 4 ... 100 ms apart).</summary>
    internal const int SpuriousWakeBudget = 16;

    private long _futexWaits;
    private long _spuriousWakes;

    /// <summary>Futex sleeps started so far (both directions).</summary>
    internal long FutexWaits => Interlocked.Read(ref _futexWaits);

    /// <summary>Futex returns that found nothing new.</summary>
    internal long SpuriousWakes => Interlocked.Read(ref _spuriousWakes);

    private static long Deadline(TimeSpan timeout)
    {
        if (timeout == Timeout.InfiniteTimeSpan)
        {
            return long.MaxValue;
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(timeout, TimeSpan.Zero);
        double ticks = timeout.TotalSeconds * Stopwatch.Frequency;
        return ticks >= long.MaxValue / 2 ? long.MaxValue : Stopwatch.GetTimestamp() + (long)ticks;
    }

    /// <summary>Returns once <c>*sequence != seen</c>; throws <see cref="TimeoutException"/> at the deadline, <see cref="OperationCanceledException"/>, <see cref="ObjectDisposedException"/>.</summary>
    private void WaitForChange(ulong* sequence, ulong seen, int* sleeper, long deadline, TimeSpan timeout, CancellationToken cancellationToken, string what)
    {
        long spinEnd = Stopwatch.GetTimestamp() + (long)(SpinTime.TotalSeconds * Stopwatch.Frequency);
        var spin = default(SpinWait);
        while (Volatile.Read(ref *sequence) == seen)
        {
            long now = Stopwatch.GetTimestamp();
            if (now >= spinEnd || now >= deadline)
            {
                Sleep(sequence, seen, sleeper, deadline, timeout, cancellationToken, what);
                return;
            }

            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    private void Sleep(ulong* sequence, ulong seen, int* sleeper, long deadline, TimeSpan timeout, CancellationToken cancellationToken, string what)
    {
        using var wake = cancellationToken.CanBeCanceled
            ? cancellationToken.UnsafeRegister(static state => ControlRingSleeper.WakeAll((int*)(nint)state!), (nint)sleeper)
            : default;
        int spurious = 0;
        while (true)
        {
            Interlocked.Exchange(ref *sleeper, 1); // announce, with a full fence, then re-check everything
            if (Volatile.Read(ref *sequence) != seen || Volatile.Read(ref _disposed) != 0 || cancellationToken.IsCancellationRequested)
            {
                Volatile.Write(ref *sleeper, 0);
                ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
                cancellationToken.ThrowIfCancellationRequested();
                return;
            }

            long left = deadline == long.MaxValue ? long.MaxValue : deadline - Stopwatch.GetTimestamp();
            if (left <= 0)
            {
                Volatile.Write(ref *sleeper, 0);
                throw new TimeoutException($"No {what} within {timeout.TotalMilliseconds:0.###} ms.");
            }

            if (spurious >= SpuriousWakeBudget)
            {
                // A peer that keeps the futex from sleeping gets polled, ever more rarely: never a
                // spinning core, and at most ten wake-ups a second once it has shown what it does.
                Volatile.Write(ref *sleeper, 0);
                Thread.Sleep(Math.Min(100, 1 << Math.Min(7, spurious++ - SpuriousWakeBudget)));
                continue;
            }

            var wait = left == long.MaxValue ? TimeSpan.MaxValue : TimeSpan.FromSeconds((double)left / Stopwatch.Frequency);
            Interlocked.Increment(ref _futexWaits);
            var result = Interop.Libc.FutexWait(sleeper, 1, wait);
            if (result is Interop.FutexResult.Woken or Interop.FutexResult.ValueChanged && Volatile.Read(ref *sequence) == seen)
            {
                spurious++;
                Interlocked.Increment(ref _spuriousWakes);
            }
        }
    }
}
