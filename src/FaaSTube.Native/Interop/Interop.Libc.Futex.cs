using System.Runtime.InteropServices;

namespace FaaSTube.Native;

internal static partial class Interop
{
    /// <summary>
    /// futex(2) on a 32-bit word in memory shared between processes (a MAP_SHARED mapping of a
    /// memfd): the non-private operations FUTEX_WAIT and FUTEX_WAKE, keyed by the file and offset,
    /// so a wake in one process reaches a waiter in another. Called through syscall(2); glibc has no
    /// wrapper. Linux x86_64 and aarch64 only (the LP64 timespec, the syscall numbers below).
    /// </summary>
    internal static unsafe partial class Libc
    {
        internal const int FUTEX_WAIT = 0;
        internal const int FUTEX_WAKE = 1;
        internal const int ETIMEDOUT = 110;

        private const long SysFutexX64 = 202;
        private const long SysFutexArm64 = 98;

        /// <summary>struct timespec (LP64).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct TimeSpec
        {
            public long Seconds;
            public long Nanoseconds;
        }

        /// <summary>
        /// syscall(2) with the six argument registers of futex(2) spelled out. syscall is variadic in
        /// C; on the Linux x86_64 and aarch64 calling conventions integer and pointer arguments of a
        /// variadic call travel in the same registers as fixed ones, so this fixed signature is the same call.
        /// </summary>
        [LibraryImport(Lib, EntryPoint = "syscall", SetLastError = true)]
        private static partial long syscall_futex(long number, int* address, int operation, int value, TimeSpec* timeout, nint address2, int value3);

        /// <summary>The futex syscall number of this process's architecture.</summary>
        private static readonly long SysFutex = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => SysFutexX64,
            Architecture.Arm64 => SysFutexArm64,
            _ => 0,
        };

        /// <summary>True where <see cref="FutexWait"/> and <see cref="FutexWake"/> can be called (Linux, x86_64 or aarch64).</summary>
        internal static bool FutexAvailable => OperatingSystem.IsLinux() && SysFutex != 0;

        /// <summary>
        /// Sleeps while <c>*address == expected</c>, at most <paramref name="timeout"/> (relative;
        /// clamped to [0, ~24 days]). Never throws for the outcomes a caller must expect: a wake or a
        /// spurious return (<see cref="FutexResult.Woken"/>), the word was not <paramref name="expected"/>
        /// (EAGAIN: <see cref="FutexResult.ValueChanged"/>), a signal (EINTR:
        /// <see cref="FutexResult.Interrupted"/>), the timeout (ETIMEDOUT: <see cref="FutexResult.TimedOut"/>).
        /// Anything else (EFAULT, EINVAL, ENOSYS) is a bug or an unsupported system: <see cref="IOException"/>.
        /// </summary>
        internal static FutexResult FutexWait(int* address, int expected, TimeSpan timeout)
        {
            long ticks = Math.Clamp(timeout.Ticks, 0, TimeSpan.FromDays(24).Ticks);
            var spec = new TimeSpec { Seconds = ticks / TimeSpan.TicksPerSecond, Nanoseconds = ticks % TimeSpan.TicksPerSecond * 100 };
            long result = syscall_futex(RequireFutex(), address, FUTEX_WAIT, expected, &spec, 0, 0);
            if (result == 0)
            {
                return FutexResult.Woken;
            }

            int errno = Marshal.GetLastPInvokeError();
            return errno switch
            {
                EAGAIN => FutexResult.ValueChanged,
                EINTR => FutexResult.Interrupted,
                ETIMEDOUT => FutexResult.TimedOut,
                _ => throw new IOException($"futex(FUTEX_WAIT) failed: {Marshal.GetPInvokeErrorMessage(errno)}."),
            };
        }

        /// <summary>Wakes at most <paramref name="count"/> waiters on <paramref name="address"/>; returns how many were woken.</summary>
        internal static int FutexWake(int* address, int count)
        {
            long result = syscall_futex(RequireFutex(), address, FUTEX_WAKE, count, null, 0, 0);
            return result >= 0
                ? (int)result
                : throw new IOException($"futex(FUTEX_WAKE) failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}.");
        }

        private static long RequireFutex() =>
            FutexAvailable ? SysFutex : throw new PlatformNotSupportedException($"futex is used on Linux x86_64 and aarch64 only, not {RuntimeInformation.OSDescription} {RuntimeInformation.ProcessArchitecture}.");
    }

    /// <summary>How a <see cref="Libc.FutexWait"/> ended.</summary>
    internal enum FutexResult
    {
        /// <summary>Woken by FUTEX_WAKE (or spuriously): re-check the condition.</summary>
        Woken,

        /// <summary>EAGAIN: the word was not the expected value when the kernel looked.</summary>
        ValueChanged,

        /// <summary>EINTR: a signal interrupted the wait.</summary>
        Interrupted,

        /// <summary>ETIMEDOUT: the relative timeout passed.</summary>
        TimedOut,
    }
}
