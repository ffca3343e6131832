using System.Runtime.CompilerServices;
using FaaSTube.Native;
using FaaSTube.Native.Ucx;

namespace FaaSTube.Tests.Native;

/// <summary>
/// A process that loaded UCX still turns hardware faults in managed code into exceptions. libucs
/// installs its own handler for SIGSEGV, SIGBUS, SIGFPE and SIGILL as it loads (UCX_HANDLE_ERRORS,
/// UCX_ERROR_SIGNALS), in place of the runtime's: a NullReferenceException, which the runtime raises
/// from a SIGSEGV, then printed "Caught signal 11 (Segmentation fault: address not mapped to object
/// at address 0x28)" and killed the test host (exit 139). <see cref="UcxLibrary"/> gives the signals
/// back to the runtime right after loading. Skipped (inconclusive) where libucp is not installed.
/// </summary>
[TestClass]
public sealed class UcxSignalTests
{
    [TestMethod]
    public void A_null_dereference_after_ucx_loaded_is_a_NullReferenceException()
    {
        LoadUcx();

        // Many times, on several threads: each is a real SIGSEGV the runtime must get.
        int caught = 0;
        Parallel.For(0, 64, _ =>
        {
            try
            {
                _ = FieldOf(Nothing());
            }
            catch (NullReferenceException)
            {
                Interlocked.Increment(ref caught);
            }
        });

        Assert.AreEqual(64, caught);
    }

    [TestMethod]
    public void An_integer_division_by_zero_after_ucx_loaded_is_a_DivideByZeroException()
    {
        LoadUcx();

        Assert.ThrowsExactly<DivideByZeroException>(() => Divide(1, Zero()));
    }

    private static void LoadUcx()
    {
        if (!UcxLibrary.IsAvailable)
        {
            Assert.Inconclusive(UcxLibrary.UnavailableReason ?? "UCX is not available");
        }

        // A context and a worker as every UCX user makes them: nothing of UCX may take the signals back.
        using var context = UcxContext.Create(UcxContext.LoopbackTcp);
        using var worker = UcxWorker.Create(context, "ucx-signal-test");
    }

    private sealed class Holder
    {
        public long A = 1;
        public long B = 2;
        public long C = 3;
        public long D = 4;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Holder? Nothing() => null;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static long FieldOf(Holder? holder) => holder!.D + holder.A + holder.B + holder.C; // a load at a small offset from null: SIGSEGV

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int Zero() => 0;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int Divide(int a, int b) => a / b; // idiv: SIGFPE on x64
}
