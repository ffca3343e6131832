using System.Diagnostics;
using System.Threading.Tasks.Sources;
using FaaSTube.Devices.Completion;
using FaaSTube.Native;
using FaaSTube.Native.Handles;
using Microsoft.Extensions.ObjectPool;

namespace FaaSTube.Devices.Cuda;

/// <summary>
/// A reusable completion for one GPU op (model: ResettableValueTaskSource in System.Net.Quic):
/// pooled, so issuing a copy allocates nothing. The stream's <see cref="CompletionThread{T}"/> waits
/// for its blocking-sync event (a short spin on <c>cuEventQuery</c> for ops that end within
/// <see cref="SpinMicroseconds"/>, then <c>cuEventSynchronize</c>, which sleeps in the driver) and
/// completes it; a failed wait fails this op alone.
/// </summary>
internal sealed class CudaCompletion : IValueTaskSource<ulong>, IDeviceCompletion
{
    /// <summary>How long a wait polls before it sleeps: bounds the CPU an op costs (short ops finish inside it, without a wake-up's latency).</summary>
    public const int SpinMicroseconds = 20;

    // Completions hold no native resource (the event is handed back before completing), so a dropped one is only garbage.
    private static readonly ObjectPool<CudaCompletion> Pool =
        new DefaultObjectPool<CudaCompletion>(new DefaultPooledObjectPolicy<CudaCompletion>(), 1024);

    private ManualResetValueTaskSourceCore<ulong> _core = new() { RunContinuationsAsynchronously = true };
    private SafeCudaEventHandle? _event;
    private Action<SafeCudaEventHandle>? _returnEvent;

    /// <summary>Reads the op's result once its event has fired (a checksum's partial sum), or null for 0.</summary>
    public Func<ulong>? ReadResult { get; set; }

    public static CudaCompletion Rent() => Pool.Get();

    public ValueTask<ulong> Task => new(this, _core.Version);

    /// <summary>Arms the completion with the event recorded after the op and where to return that event.</summary>
    public void Watch(SafeCudaEventHandle cudaEvent, Action<SafeCudaEventHandle> returnEvent)
    {
        _event = cudaEvent;
        _returnEvent = returnEvent;
    }

    public unsafe void WaitForDevice()
    {
        var cudaEvent = _event ?? throw new InvalidOperationException("The completion was not armed with an event.");
        using var scope = cudaEvent.Context.Enter();
        nint handle = cudaEvent.DangerousGetHandle();
        long spinUntil = Stopwatch.GetTimestamp() + (Stopwatch.Frequency * SpinMicroseconds / 1_000_000);
        CudaResult result;
        while ((result = Interop.Cuda.cuEventQuery(handle)) == CudaResult.ErrorNotReady && Stopwatch.GetTimestamp() < spinUntil)
        {
            Thread.SpinWait(20);
        }

        if (result == CudaResult.ErrorNotReady)
        {
            result = Interop.Cuda.cuEventSynchronize(handle); // BLOCKING_SYNC: the thread sleeps until the event fires
        }

        CudaException.ThrowIfFailed(result, "cuEventSynchronize (an op on the stream failed)");
    }

    public void Finish(Exception? error)
    {
        var cudaEvent = _event;
        var returnEvent = _returnEvent;
        _event = null;
        _returnEvent = null;
        if (error is null)
        {
            ulong value = 0;
            try
            {
                value = ReadResult?.Invoke() ?? 0;
            }
            catch (Exception e)
            {
                error = e;
            }

            if (error is null)
            {
                ReturnEvent(cudaEvent, returnEvent);
                _core.SetResult(value);
                return;
            }
        }

        cudaEvent?.Dispose(); // an event of a failed op is not reused
        _core.SetException(error);
    }

    public ulong GetResult(short token)
    {
        try
        {
            return _core.GetResult(token);
        }
        finally
        {
            ReadResult = null;
            _core.Reset();
            Pool.Return(this);
        }
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    private static void ReturnEvent(SafeCudaEventHandle? cudaEvent, Action<SafeCudaEventHandle>? returnEvent)
    {
        if (cudaEvent is null)
        {
            return;
        }

        try
        {
            returnEvent?.Invoke(cudaEvent);
        }
        catch (Exception)
        {
            cudaEvent.Dispose(); // the pool could not take it back (e.g. its device is gone): free it here
        }
    }
}
