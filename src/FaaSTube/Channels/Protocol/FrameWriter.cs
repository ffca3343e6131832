using System.IO.Pipelines;

namespace FaaSTube.Channels.Protocol;

/// <summary>
/// The one writer of a connection's frames. A <see cref="PipeWriter"/> takes one writer at a time,
/// and frames come from many threads (replies, pushes, fire-and-forget slab closes), so every frame
/// and the final completion go through one lock. Completing cancels the writes in flight and those
/// waiting for the lock (a peer that stopped reading must not hang the close), then completes the pipe.
/// </summary>
internal sealed class FrameWriter(PipeWriter writer, IDisposable? transport)
{
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly CancellationTokenSource _closing = new();
    private int _completed;

    /// <summary>Writes and flushes one frame.</summary>
    /// <exception cref="IOException">The other side closed the connection.</exception>
    /// <exception cref="ObjectDisposedException">This side closed the connection (before or during the write).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled before the frame's turn came.</exception>
    public async ValueTask SendAsync(FrameType type, uint requestId, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        using var linked = cancellationToken.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _closing.Token) : null;
        var token = linked?.Token ?? _closing.Token;
        try
        {
            await _lock.WaitAsync(token).ConfigureAwait(false);
            try
            {
                // The caller may give up while waiting for its turn; once bytes go out, only closing
                // stops them (a frame cut in the middle would desynchronise the stream).
                token.ThrowIfCancellationRequested();
                await Frames.WriteAsync(writer, type, requestId, payload, _closing.Token).ConfigureAwait(false);
            }
            finally
            {
                _lock.Release();
            }
        }
        catch (OperationCanceledException e) when (_closing.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new ObjectDisposedException("The connection was closed.", e);
        }
    }

    /// <summary>Ends the connection (once; later calls return at once): cancels the writes, closes the transport, then completes the pipe.</summary>
    public async ValueTask CompleteAsync()
    {
        if (Interlocked.Exchange(ref _completed, 1) != 0)
        {
            return;
        }

        await _closing.CancelAsync().ConfigureAwait(false);
        transport?.Dispose();
        await _lock.WaitAsync().ConfigureAwait(false);
        try
        {
            await Quietly(writer.CompleteAsync()).ConfigureAwait(false); // flushing to a peer that is gone fails: nothing to flush to
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>Awaits a pipe's completion, ignoring a transport that is already broken.</summary>
    public static async ValueTask Quietly(ValueTask completion)
    {
        try
        {
            await completion.ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or System.Net.Sockets.SocketException)
        {
            // The other side is gone.
        }
    }
}
