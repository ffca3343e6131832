using System.Collections.Concurrent;
using FaaSTube.Devices;
using FaaSTube.Transfers.Routing;

namespace FaaSTube.Transfers;

/// <summary>Which way a lane carries data: the two directions of a full-duplex link.</summary>
public enum LaneDirection
{
    /// <summary>Host to GPU.</summary>
    HostToDevice,

    /// <summary>GPU to host.</summary>
    DeviceToHost,
}

/// <summary>
/// The executor of one direction: a loop that, at each batch boundary, lets newly submitted
/// transfers join, asks the <see cref="BandwidthPolicy"/> for the next batch, and issues its chunks
/// (a bounded number at once, so batches pipeline into each other) onto the lane's streams.
/// </summary>
internal sealed class TransferLane : IDisposable, IAsyncDisposable
{
    private readonly ConcurrentQueue<TransferJob> _incoming = new();
    private readonly List<TransferJob> _active = [];
    private readonly SemaphoreSlim _wake = new(0);
    private readonly SemaphoreSlim _inFlight;
    private readonly BandwidthPolicy _policy;
    private readonly TransferEngineOptions _options;
    private readonly Func<TimeSpan> _now;
    private readonly double _capacity;
    private readonly Lazy<GpuStream>[] _streams; // created on first use: the constructor opens nothing
    private readonly CancellationTokenSource _stop = new();
    private readonly ChunkTurns.Chain _dmaTurns = new();
    private readonly Lock _starting = new();
    private Task? _loop;
    private readonly PathRouter? _router;
    private readonly int _gpu;
    private int _nextStream;
    private bool _wasOversubscribed;
    private bool _busy;

    public TransferLane(LaneDirection direction, GpuDevice device, TransferEngineOptions options, double capacity, int maxInFlight, Func<TimeSpan> now, PathRouter? router = null)
    {
        _router = direction == LaneDirection.HostToDevice ? router : null;
        _gpu = device.Ordinal;
        Direction = direction;
        _options = options;
        _capacity = capacity;
        _now = now;
        _policy = new BandwidthPolicy(options.ChunkBytes, options.BatchChunks);
        _inFlight = new SemaphoreSlim(maxInFlight, maxInFlight);
        _streams = Enumerable.Range(0, options.StreamsPerLane).Select(_ => new Lazy<GpuStream>(() => device.CreateStream(), LazyThreadSafetyMode.ExecutionAndPublication)).ToArray();
    }

    /// <summary>Starts the scheduling loop on the first transfer that needs it (the constructor starts nothing).</summary>
    private void EnsureLoop()
    {
        if (Volatile.Read(ref _loop) is not null)
        {
            return;
        }

        lock (_starting)
        {
            if (_loop is null) // also when stopping: the loop then abandons what is queued
            {
                Volatile.Write(ref _loop, Task.Run(RunAsync));
            }
        }
    }

    /// <summary>The loop, once started (stopping waits for it).</summary>
    private Task Loop()
    {
        lock (_starting)
        {
            return _loop ?? Task.CompletedTask;
        }
    }

    public LaneDirection Direction { get; }

    private int _activeCount;

    /// <summary>Transfers waiting for or getting chunks.</summary>
    public int QueueDepth => _incoming.Count + Volatile.Read(ref _activeCount);

    /// <summary>Raised (on the lane's loop) when the least rates stop or start fitting in the link.</summary>
    public event Action<TransferLane, bool, IReadOnlyList<long>>? OversubscriptionChanged;

    /// <summary>The next stream, round robin: chunks in flight spread over the lane's streams.</summary>
    public GpuStream NextStream() => _streams[(int)((uint)Interlocked.Increment(ref _nextStream) % _streams.Length)].Value;

    public void Submit(TransferJob job)
    {
        if (_stop.IsCancellationRequested)
        {
            throw new ObjectDisposedException(nameof(TransferEngine));
        }

        // Fast path: a one-chunk transfer on an idle lane needs no scheduling (any policy gives it
        // the whole link), so it runs on the caller's thread without waking the loop.
        if (job.Length <= _options.ChunkBytes && _incoming.IsEmpty && Volatile.Read(ref _activeCount) == 0 && _inFlight.Wait(0))
        {
            _ = job.RunChunkAsync(_options.ChunkBytes, _dmaTurns.Next(), ChunkFinished, inline: true);
            return;
        }

        _incoming.Enqueue(job);
        EnsureLoop();
        _wake.Release();
    }

    private async Task RunAsync()
    {
        var token = _stop.Token;
        try
        {
            while (!token.IsCancellationRequested)
            {
                while (_incoming.TryDequeue(out var job))
                {
                    _active.Add(job); // joins at this batch boundary
                }

                // Done issuing (all issued, failed or cancelled): finish it if nothing is in flight; chunks
                // still in flight finish it from ChunkFinished.
                foreach (var done in _active.Where(j => !j.WantsChunks))
                {
                    done.TryFinish(_now());
                }

                _active.RemoveAll(j => !j.WantsChunks);
                Volatile.Write(ref _activeCount, _active.Count);
                var demands = _active.Where(j => j.WantsChunks).Select(j => j.Demand()).ToList();
                SetBusy(demands.Count > 0);
                if (demands.Count == 0)
                {
                    await _wake.WaitAsync(token).ConfigureAwait(false);
                    continue;
                }

                var plan = _policy.Plan(demands, Capacity(), _now());
                if (plan.Oversubscribed != _wasOversubscribed)
                {
                    _wasOversubscribed = plan.Oversubscribed;
                    OversubscriptionChanged?.Invoke(this, plan.Oversubscribed, plan.Degraded);
                }

                foreach (var id in plan.Degraded)
                {
                    _active.First(j => j.Id == id).Degraded = true;
                }

                foreach (var (id, chunks) in plan.Chunks)
                {
                    var job = _active.First(j => j.Id == id);
                    for (int c = 0; c < chunks && job.WantsChunks; c++)
                    {
                        await _inFlight.WaitAsync(token).ConfigureAwait(false);
                        _ = job.RunChunkAsync(_options.ChunkBytes, _dmaTurns.Next(), ChunkFinished);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Disposed.
        }

        var stopped = new ObjectDisposedException(nameof(TransferEngine), "The transfer engine was disposed.");
        foreach (var job in _active.Concat(_incoming))
        {
            job.Abandon(stopped);
        }
    }

    /// <summary>The lane's bandwidth for planning: what harvested paths of other GPUs leave of it (never planned as zero: they are finishing).</summary>
    private double Capacity() =>
        _router is null ? _capacity : Math.Max(0.05 * _capacity, Math.Min(_capacity, _router.HostLaneAvailable(_gpu)));

    /// <summary>Tells the router when this GPU's own transfers start and stop using its PCIe lane.</summary>
    private void SetBusy(bool busy)
    {
        if (_router is not null && busy != _busy)
        {
            _busy = busy;
            _router.SetLaneBusy(_gpu, busy);
        }
    }

    private void ChunkFinished(TransferJob job, int length, Exception? error)
    {
        _inFlight.Release();
        job.ChunkFinished(length, error, _now());
        _wake.Release(); // a finished or cancelled job may let the loop move on
    }

    public void Dispose()
    {
        _stop.Cancel();
        Loop().Wait(TimeSpan.FromSeconds(30));
        DisposeStreams();
    }

    /// <summary>Stops the loop and awaits it (no thread blocked), then frees the streams.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await Loop().WaitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        DisposeStreams();
    }

    private void DisposeStreams()
    {
        foreach (var stream in _streams)
        {
            if (stream.IsValueCreated)
            {
                stream.Value.Dispose();
            }
        }
    }
}
