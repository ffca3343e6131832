namespace FaaSTube.Transfers;

/// <summary>
/// The order a chunk must keep. Its DMA is submitted after the DMA of the chunk the lane issued
/// before it, so the link carries chunks in the order the policy chose, however long each one's
/// staging copy took (staging copies still run in parallel). A sequential source or sink (stream,
/// pipe) is also read or written in its transfer's chunk order. Each turn is passed exactly once,
/// also when the chunk fails, so no chunk waits for one that will never come.
/// </summary>
internal sealed class ChunkTurns(Task dmaPrevious, TaskCompletionSource dmaMine, Task? sourcePrevious, TaskCompletionSource? sourceMine)
{
    public Task WaitDmaAsync() => dmaPrevious;

    public void PassDma() => dmaMine.TrySetResult();

    public Task WaitSourceAsync() => sourcePrevious ?? Task.CompletedTask;

    public void PassSource() => sourceMine?.TrySetResult();

    public void PassAll()
    {
        PassSource();
        PassDma();
    }

    /// <summary>A chain of turns: each call takes the previous link and makes the next one.</summary>
    internal sealed class Chain
    {
        private readonly Lock _lock = new();
        private Task _tail = Task.CompletedTask;

        public (Task Previous, TaskCompletionSource Mine) Next()
        {
            var mine = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (_lock)
            {
                var previous = _tail;
                _tail = mine.Task;
                return (previous, mine);
            }
        }
    }
}
