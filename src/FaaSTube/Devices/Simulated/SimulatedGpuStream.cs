using System.Threading.Channels;
using FaaSTube.Kernels;

namespace FaaSTube.Devices.Simulated;

/// <summary>
/// A simulated stream: one worker runs its ops in order with real memcpy (and the kernels' CPU
/// twins), charging each to the machine's link model when a virtual clock is set.
/// </summary>
internal sealed class SimulatedGpuStream : GpuStream
{
    private readonly Channel<Work> _queue = Channel.CreateUnbounded<Work>(new UnboundedChannelOptions { SingleReader = true });
    private readonly SimulatedMachine _machine;
    private TimeSpan _lastEnd;

    public SimulatedGpuStream(SimulatedGpuDevice device, int priority)
        : base(device, priority)
    {
        _machine = device.Machine;
        _ = Task.Run(RunAsync); // ends when DisposeCore completes the queue
    }

    private protected override ValueTask<ulong> SubmitAsync(StreamOp op)
    {
        var work = new Work(op) { Timeline = VirtualTimeline.Box };
        if (!_queue.Writer.TryWrite(work))
        {
            throw new ObjectDisposedException(ToString());
        }

        return new ValueTask<ulong>(work.Completion.Task);
    }

    private protected override async ValueTask SynchronizeCoreAsync(CancellationToken cancellationToken)
    {
        var marker = new Work(default);
        if (_queue.Writer.TryWrite(marker))
        {
            await marker.Completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private protected override void DisposeCore() => _queue.Writer.TryComplete();

    private async Task RunAsync()
    {
        await foreach (var work in _queue.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            try
            {
                work.Completion.TrySetResult(work.Op.Length == 0 ? 0 : Execute(work));
            }
            catch (Exception e)
            {
                work.Completion.TrySetException(e);
            }
        }
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

    private delegate void SpanAction(Span<byte> span, long firstWord);

    private sealed class Work(StreamOp op)
    {
        public StreamOp Op { get; } = op;

        /// <summary>The submitting flow's timeline (null: the machine's clock rules).</summary>
        public System.Runtime.CompilerServices.StrongBox<TimeSpan>? Timeline { get; init; }

        public TaskCompletionSource<ulong> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
