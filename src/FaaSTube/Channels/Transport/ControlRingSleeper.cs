using FaaSTube.Native;

namespace FaaSTube.Channels.Transport;

/// <summary>
/// The sleeper words of a control ring (eventcount style, ControlRingLayout.cs): a side that is
/// about to sleep stores 1 in its word (a full fence), re-checks the sequence it waits on, and
/// only then futex-waits while the word is still 1. The other side publishes its sequence with a
/// full fence, then looks at the word and makes the FUTEX_WAKE syscall only if it is not 0: a
/// publish either is seen by the re-check or sees the 1, so no wake is lost, and while nobody
/// sleeps no syscall is made. A peer that keeps its word at 1 costs this side a wake syscall per
/// publish, nothing more.
/// </summary>
internal static unsafe class ControlRingSleeper
{
    /// <summary>Wakes the side that sleeps on <paramref name="sleeper"/>, if it said it would.</summary>
    public static void WakeIfSleeping(int* sleeper)
    {
        if (Volatile.Read(ref *sleeper) != 0 && Interlocked.Exchange(ref *sleeper, 0) != 0)
        {
            Interop.Libc.FutexWake(sleeper, 1);
        }
    }

    /// <summary>Clears <paramref name="sleeper"/> and wakes every waiter on it (cancellation, dispose).</summary>
    public static void WakeAll(int* sleeper)
    {
        Interlocked.Exchange(ref *sleeper, 0);
        Interop.Libc.FutexWake(sleeper, int.MaxValue);
    }
}
