using System.Threading.Tasks.Sources;
using Microsoft.Extensions.ObjectPool;

namespace FaaSTube.Devices.Cuda;

/// <summary>
/// A reusable completion for one GPU op (model: ResettableValueTaskSource in System.Net.Quic):
/// pooled, so issuing a copy allocates nothing; the poller completes it when the op's event fires.
/// </summary>
internal sealed class CudaCompletion : IValueTaskSource<ulong>
{
    private static readonly ObjectPool<CudaCompletion> Pool =
        new DefaultObjectPool<CudaCompletion>(new DefaultPooledObjectPolicy<CudaCompletion>(), 1024);

    private ManualResetValueTaskSourceCore<ulong> _core = new() { RunContinuationsAsynchronously = true };

    /// <summary>Reads the op's result once its event has fired (a checksum's partial sum), or null for 0.</summary>
    public Func<ulong>? ReadResult { get; set; }

    public static CudaCompletion Rent() => Pool.Get();

    public ValueTask<ulong> Task => new(this, _core.Version);

    public void Complete()
    {
        try
        {
            _core.SetResult(ReadResult?.Invoke() ?? 0);
        }
        catch (Exception e)
        {
            _core.SetException(e);
        }
    }

    public void Fail(Exception error) => _core.SetException(error);

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
}
