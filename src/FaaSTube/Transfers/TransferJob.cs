namespace FaaSTube.Transfers;

/// <summary>
/// One transfer in a lane: what is left to issue, what is done, how it ends. The lane's loop issues
/// its chunks (in offset order); <see cref="RunChunkAsync"/> moves one chunk. Sequential sources and
/// sinks are read or written in issue order through a chain of per-chunk turns.
/// </summary>
internal sealed class TransferJob
{
    private readonly Func<long, int, ChunkTurns, Task> _moveChunk;
    private readonly TaskCompletionSource<TransferResult> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ChunkTurns.Chain? _sourceTurns;
    private long _completed;
    private int _inFlight;
    private Exception? _failure;

    public TransferJob(long id, long length, TransferRequest request, TimeSpan submitted, bool sequential, bool staged,
        Func<long, int, ChunkTurns, Task> moveChunk, CancellationToken cancellationToken)
    {
        Id = id;
        Length = length;
        Request = request;
        Submitted = submitted;
        Deadline = request.Slo is { } slo ? submitted + slo - request.ComputeTime : null;
        Staged = staged;
        _sourceTurns = sequential ? new ChunkTurns.Chain() : null;
        _moveChunk = moveChunk;
        CancellationToken = cancellationToken;
    }

    public long Id { get; }

    public long Length { get; }

    public TransferRequest Request { get; }

    public TimeSpan Submitted { get; }

    public TimeSpan? Deadline { get; }

    public bool Staged { get; }

    public CancellationToken CancellationToken { get; }

    public long NextOffset { get; private set; }

    /// <summary>Bytes moved so far.</summary>
    public long CompletedBytes => Interlocked.Read(ref _completed);

    public bool Degraded { get; set; }

    public Task<TransferResult> Completion => _done.Task;

    /// <summary>True while the lane should issue more chunks.</summary>
    public bool WantsChunks => NextOffset < Length && Volatile.Read(ref _failure) is null && !CancellationToken.IsCancellationRequested;

    public TransferDemand Demand() => new(Id, Request.Tenant, Length - NextOffset, Deadline, Request.Priority, Submitted);

    /// <summary>
    /// Takes the next chunk (from the lane's loop, or inline for a lone small transfer) and moves it,
    /// on the thread pool unless <paramref name="inline"/>; <paramref name="finished"/> runs when it is done.
    /// </summary>
    public Task RunChunkAsync(int chunkBytes, (Task Previous, TaskCompletionSource Mine) dmaTurn, Action<TransferJob, int, Exception?> finished, bool inline = false)
    {
        long offset = NextOffset;
        int length = (int)Math.Min(chunkBytes, Length - offset);
        NextOffset += length;
        Interlocked.Increment(ref _inFlight);
        var source = _sourceTurns?.Next();
        var turns = new ChunkTurns(dmaTurn.Previous, dmaTurn.Mine, source?.Previous, source?.Mine);
        return inline ? Move() : Task.Run(Move);

        async Task Move()
        {
            Exception? error = null;
            try
            {
                await _moveChunk(offset, length, turns).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                error = e;
            }
            finally
            {
                turns.PassAll(); // a failed chunk must not block the ones behind it
            }

            finished(this, length, error);
        }
    }

    /// <summary>Records a finished chunk; completes the transfer when nothing is left in flight and nothing more will be issued.</summary>
    public void ChunkFinished(int length, Exception? error, TimeSpan now)
    {
        if (error is null)
        {
            long done = Interlocked.Add(ref _completed, length);
            Request.Progress?.Report(done);
        }
        else
        {
            Interlocked.CompareExchange(ref _failure, error, null);
        }

        Interlocked.Decrement(ref _inFlight);
        TryFinish(now);
    }

    /// <summary>Completes the transfer if it is over: all bytes done, or failed/cancelled with nothing in flight.</summary>
    public bool TryFinish(TimeSpan now)
    {
        if (Volatile.Read(ref _inFlight) > 0)
        {
            return false;
        }

        if (Volatile.Read(ref _failure) is { } failure)
        {
            return _done.TrySetException(failure);
        }

        if (Interlocked.Read(ref _completed) == Length)
        {
            var elapsed = now - Submitted;
            return _done.TrySetResult(new TransferResult(Length, elapsed, Deadline is { } d ? now <= d : null, Degraded, Staged));
        }

        return CancellationToken.IsCancellationRequested && _done.TrySetCanceled(CancellationToken);
    }

    /// <summary>Fails a transfer that never started (lane disposed).</summary>
    public void Abandon(Exception error) => _done.TrySetException(error);
}
