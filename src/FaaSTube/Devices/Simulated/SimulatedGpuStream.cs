using System.Collections.Concurrent;
using System.Threading.Channels;
using FaaSTube.Devices.Completion;
using FaaSTube.Kernels;

namespace FaaSTube.Devices.Simulated;

/// <summary>
/// A simulated stream: one worker runs its ops in order with real memcpy (and the kernels' CPU
/// twins), charging each to the machine's link model when a virtual clock is set.
/// </summary>
internal sealed class SimulatedGpuStream : GpuStream
{
    /// <summary>
    /// The live streams of this process by id (their <see cref="GpuStream.NativeHandle"/>), for
    /// <see cref="GpuDevice.WrapStream"/>; weak, so a stream never disposed is still collected.
    /// </summary>
    private static readonly ConcurrentDictionary<nint, WeakReference<SimulatedGpuStream>> Live = new();
    private static long s_lastId;
    private readonly nint _id = (nint)Interlocked.Increment(ref s_lastId);
    private readonly Channel<Work> _queue = Channel.CreateUnbounded<Work>(new UnboundedChannelOptions { SingleReader = true });
    private readonly SimulatedMachine _machine;
    private readonly CompletionThread<SimulatedCompletion>? _completions;
    private TimeSpan _lastEnd;
    private long _realTimeEnd;
    private Work? _last; // the last work queued: ops complete in order, so when it has, all have

    public SimulatedGpuStream(SimulatedGpuDevice device, int priority)
        : base(device, priority)
    {
        _machine = device.Machine;
        if (_machine.RealTime)
        {
            _completions = new CompletionThread<SimulatedCompletion>($"FaaSTube simulated completions ({device.Ordinal})");
        }

        _ = Task.Run(RunAsync); // ends when DisposeCore completes the queue
        Live[_id] = new WeakReference<SimulatedGpuStream>(this);
    }

    /// <summary>The live stream whose id is <paramref name="id"/>, or null.</summary>
    internal static SimulatedGpuStream? Find(nint id) =>
        Live.TryGetValue(id, out var entry) && entry.TryGetTarget(out var stream) ? stream : null;

    private protected override nint NativeHandleCore => _id;

    /// <summary>Queues <paramref name="op"/> for a view of this stream (<see cref="SimulatedStreamView"/>); throws <see cref="ObjectDisposedException"/> once this stream is disposed.</summary>
    internal ValueTask<ulong> Enqueue(StreamOp op) => SubmitAsync(op);

    /// <summary>Completes when everything queued so far, by this stream or its views, has finished.</summary>
    internal ValueTask SynchronizeQueuedAsync(CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        return SynchronizeCoreAsync(cancellationToken);
    }

    private protected override ValueTask<ulong> SubmitAsync(StreamOp op)
    {
        var work = new Work(op) { Timeline = VirtualTimeline.Box };
        if (!_queue.Writer.TryWrite(work))
        {
            throw new ObjectDisposedException(ToString());
        }

        Volatile.Write(ref _last, work);
        return new ValueTask<ulong>(work.Completion.Task);
    }

    private protected override async ValueTask SynchronizeCoreAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _last) is not { } last || last.Completion.Task.IsCompleted)
        {
            return; // idle: nothing queued is unfinished (no marker, no wake-up of the worker)
        }

        var marker = new Work(default);
        if (_queue.Writer.TryWrite(marker))
        {
            await marker.Completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private protected override void DisposeCore()
    {
        Live.TryRemove(_id, out _);
        _queue.Writer.TryComplete();
    }

    private async Task RunAsync()
    {
        await foreach (var work in _queue.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            ulong result = 0;
            Exception? error = null;
            try
            {
                result = work.Op.Length == 0 ? 0 : Execute(work);
            }
            catch (Exception e)
            {
                error = e;
            }

            if (_completions is { } completions)
            {
                completions.Add(new SimulatedCompletion(work.Completion, result, error, RealTimeEnd(work.Op, error is null)));
            }
            else if (error is null)
            {
                work.Completion.TrySetResult(result);
            }
            else
            {
                work.Completion.TrySetException(error);
            }
        }

        _completions?.Dispose();
    }

    /// <summary>The wall-clock timestamp at which the op ends in the link model, after the stream's previous op.</summary>
    private long RealTimeEnd(StreamOp op, bool ran)
    {
        var duration = TimeSpan.Zero;
        if (ran && op.Length > 0)
        {
            int source = op.Source.Buffer?.Device.Ordinal ?? Device.Ordinal;
            int destination = op.Destination.Buffer?.Device.Ordinal ?? Device.Ordinal;
            foreach (var link in _machine.LinksFor(op.Kind, source, destination))
            {
                duration += link.Duration(op.Length);
            }
        }

        _realTimeEnd = Math.Max(_realTimeEnd, System.Diagnostics.Stopwatch.GetTimestamp())
            + (long)(duration.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        return _realTimeEnd;
    }

    private unsafe ulong Execute(Work work)
    {
        var op = work.Op;
        _machine.OnExecute?.Invoke(op);
        if (op.Kind is StreamOpKind.HostToDevice or StreamOpKind.DeviceToHost && !PinnedRanges.Contains(op.Host, op.Length))
        {
            _machine.CountPageable();
        }

        ulong result = 0;
        switch (op.Kind)
        {
            case StreamOpKind.HostToDevice:
                Buffer.MemoryCopy((void*)op.Host, (void*)op.Destination.Address, op.Length, op.Length);
                break;
            case StreamOpKind.DeviceToHost:
                Buffer.MemoryCopy((void*)op.Source.Address, (void*)op.Host, op.Length, op.Length);
                break;
            case StreamOpKind.DeviceToDevice:
                Buffer.MemoryCopy((void*)op.Source.Address, (void*)op.Destination.Address, op.Length, op.Length);
                break;
            case StreamOpKind.Memset:
                ForEachSpan(op.Destination, (span, _) => span.Fill(op.Value));
                break;
            case StreamOpKind.FillPattern:
                ForEachSpan(op.Destination, (span, firstWord) => DataPattern.Fill(span, op.Seed, firstWord));
                break;
            case StreamOpKind.Checksum:
                ForEachSpan(op.Source, (span, firstWord) => result += DataChecksum.PartialSum(span, firstWord));
                break;
        }

        Charge(op, work.Timeline);
        return result;
    }

    /// <summary>Runs <paramref name="action"/> over spans of at most 1 GiB (a span's limit), with each span's first word index.</summary>
    private static unsafe void ForEachSpan(DeviceMemory memory, SpanAction action)
    {
        const long Step = 1L << 30;
        for (long off = 0; off < memory.Length; off += Step)
        {
            int len = (int)Math.Min(Step, memory.Length - off);
            action(new Span<byte>((byte*)memory.Address + off, len), off / 8);
        }
    }

    /// <summary>
    /// Books the op on its links: it starts when the stream is free and its flow could have issued
    /// it (its own timeline when forked, else the machine's clock), and moves the clock and the
    /// flow's timeline to its end.
    /// </summary>
    private void Charge(StreamOp op, System.Runtime.CompilerServices.StrongBox<TimeSpan>? timeline)
    {
        if (_machine.Clock is not { } clock)
        {
            return;
        }

        int source = op.Source.Buffer?.Device.Ordinal ?? Device.Ordinal;
        int destination = op.Destination.Buffer?.Device.Ordinal ?? Device.Ordinal;
        var issued = timeline is { Value: var t } && t != TimeSpan.MinValue ? t : clock.Now;
        if (timeline is not null && timeline.Value == TimeSpan.MinValue)
        {
            VirtualTimeline.Reach(timeline, issued); // a fresh timeline starts at the clock
        }

        // A flow on its own timeline is ordered by that timeline (and the links' intervals); the
        // order in which host threads happened to reach a shared stream says nothing about virtual time.
        var notBefore = timeline is not null || issued > _lastEnd ? issued : _lastEnd;
        foreach (var link in _machine.LinksFor(op.Kind, source, destination))
        {
            notBefore = link.Book(op.Length, notBefore);
        }

        _lastEnd = notBefore;
        if (timeline is not null)
        {
            VirtualTimeline.Reach(timeline, notBefore);
        }

        clock.AdvanceTo(notBefore);
    }

    /// <summary>A simulated op's completion in real-time mode: its "device" finishes at a wall-clock timestamp.</summary>
    private sealed class SimulatedCompletion(TaskCompletionSource<ulong> completion, ulong result, Exception? error, long endTimestamp) : IDeviceCompletion
    {
        /// <summary>Sleeps until the modelled end, as a thread in a blocking-sync <c>cuEventSynchronize</c> would.</summary>
        public void WaitForDevice()
        {
            var remaining = System.Diagnostics.Stopwatch.GetElapsedTime(System.Diagnostics.Stopwatch.GetTimestamp(), endTimestamp);
            if (remaining > TimeSpan.Zero)
            {
                Thread.Sleep(remaining);
            }

            if (error is not null)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
            }
        }

        public void Finish(Exception? failure)
        {
            if (failure is null)
            {
                completion.TrySetResult(result);
            }
            else
            {
                completion.TrySetException(failure);
            }
        }
    }

    private delegate void SpanAction(Span<byte> span, long firstWord);

    private sealed class Work(StreamOp op)
    {
        public StreamOp Op { get; } = op;

        /// <summary>The submitting flow's timeline (null: the machine's clock rules).</summary>
        public System.Runtime.CompilerServices.StrongBox<TimeSpan>? Timeline { get; init; }

        public TaskCompletionSource<ulong> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
