using System.Collections.Concurrent;
using FaaSTube.Native;

namespace FaaSTube.Devices.Cuda;

/// <summary>
/// One thread for the whole process that turns recorded events into completed
/// <see cref="ValueTask"/>s: it polls <c>cuEventQuery</c> while work is outstanding (yielding between
/// rounds, so it costs one core only while the GPU is busy) and sleeps on a semaphore when none is.
/// Polling rather than <c>cuLaunchHostFunc</c> because a failed stream would never call a host
/// function, and a waiter must never hang.
/// </summary>
internal sealed class CudaCompletionPoller
{
    public static readonly CudaCompletionPoller Instance = new();

    private readonly ConcurrentQueue<Pending> _incoming = new();
    private readonly SemaphoreSlim _signal = new(0);
    private readonly Thread _thread;

    private CudaCompletionPoller()
    {
        _thread = new Thread(Run) { IsBackground = true, Name = "FaaSTube CUDA completions" };
        _thread.Start();
    }

    /// <summary>Completes <paramref name="completion"/> when <paramref name="cudaEvent"/> fires, then hands the event back to <paramref name="returnEvent"/>.</summary>
    public void Watch(SafeCudaEventHandle cudaEvent, CudaCompletion completion, Action<SafeCudaEventHandle> returnEvent)
    {
        _incoming.Enqueue(new Pending(cudaEvent, completion, returnEvent));
        _signal.Release();
    }

    private void Run()
    {
        var active = new List<Pending>();
        while (true)
        {
            if (active.Count == 0 && _incoming.IsEmpty)
            {
                _signal.Wait(); // stale counts only cost an empty round
            }

            while (_incoming.TryDequeue(out var p))
            {
                active.Add(p);
            }

            for (int i = active.Count - 1; i >= 0; i--)
            {
                var p = active[i];
                CudaResult result;
                using (p.Event.Context.Enter())
                {
                    result = Interop.Cuda.cuEventQuery(p.Event.DangerousGetHandle());
                }

                if (result == CudaResult.ErrorNotReady)
                {
                    continue;
                }

                active.RemoveAt(i);
                if (result == CudaResult.Success)
                {
                    p.ReturnEvent(p.Event);
                    p.Completion.Complete();
                }
                else
                {
                    p.Event.Dispose();
                    p.Completion.Fail(new CudaException(result, "cuEventQuery (an op on the stream failed)"));
                }
            }

            if (active.Count > 0)
            {
                Thread.Yield();
            }
        }
    }

    private readonly record struct Pending(SafeCudaEventHandle Event, CudaCompletion Completion, Action<SafeCudaEventHandle> ReturnEvent);
}
