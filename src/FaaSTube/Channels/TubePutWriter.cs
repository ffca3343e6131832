using System.Buffers;
using System.Runtime.ExceptionServices;
using FaaSTube.Channels.Client;

namespace FaaSTube.Channels;

/// <summary>
/// Writes a Put of a known length straight into the client's window, one slot at a time: a filled
/// slot is sent to the node as a part (a DMA, no host copy) while the caller writes the next one.
/// Made by <see cref="TubeClient.CreatePutWriterAsync"/>. Not thread-safe (one writer, one caller).
/// </summary>
/// <remarks>
/// <para>The pattern: <c>await FlushAsync()</c>, <see cref="GetMemory"/> or <see cref="GetSpan"/>,
/// write, <see cref="Advance"/>; repeat until <see cref="Written"/> is <see cref="Length"/>; then
/// <see cref="CompleteAsync"/> returns the id. <see cref="GetMemory"/> never blocks: it returns the
/// free part of the current slot (at most <see cref="TubeClient.WindowSlotLength"/> bytes, never
/// more than is left to write); when that slot is full and no next slot is free yet it throws
/// <see cref="InvalidOperationException"/>, and <see cref="FlushAsync"/> is what waits for one.</para>
/// <para><b>Not a general-purpose <see cref="IBufferWriter{T}"/></b>: a writer that asks for more
/// than <see cref="TubeClient.WindowSlotLength"/> at once, or writes several slots without awaiting
/// <see cref="FlushAsync"/> in between (a serializer such as <c>Utf8JsonWriter</c> handed this
/// writer directly), gets <see cref="InvalidOperationException"/>. Serialize into your own buffer and
/// Put that, or write in slot-sized steps with a flush after each.</para>
/// <para>Disposing a writer that was not completed drops the unfinished data (after the node has
/// answered the parts in flight). Memory from <see cref="GetMemory"/> is valid until the next
/// <see cref="Advance"/>, as with any <see cref="IBufferWriter{T}"/>.</para>
/// </remarks>
public sealed class TubePutWriter : IBufferWriter<byte>, IAsyncDisposable
{
    private readonly WindowSlots _slots;
    private readonly Memory<byte> _window;
    private readonly PendingPut _put;
    private readonly CancellationTokenSource _closing = new();
    private WindowRange? _current;
    private int _filled;
    private Task<WindowRange>? _next;
    private long _sent;
    private bool _closed;

    internal TubePutWriter(WindowSlots slots, Memory<byte> window, PendingPut put, long length)
    {
        _slots = slots;
        _window = window;
        _put = put;
        Length = length;
    }

    /// <summary>The Put's length: exactly this many bytes are written before <see cref="CompleteAsync"/>.</summary>
    public long Length { get; }

    /// <summary>The version a named Put's commit made (0 before, and for an id's Put).</summary>
    internal long Version => _put.Version;

    /// <summary>Bytes advanced so far.</summary>
    public long Written { get; private set; }

    /// <summary>The free part of the current window slot, at least <paramref name="sizeHint"/> bytes (unless fewer are left to write).</summary>
    /// <param name="sizeHint">The least the caller needs, up to <see cref="TubeClient.WindowSlotLength"/>; 0: at least one byte.</param>
    /// <exception cref="InvalidOperationException">No window slot is free yet (await <see cref="FlushAsync"/>), or every byte is written.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="sizeHint"/> is negative or larger than a slot.</exception>
    /// <exception cref="ObjectDisposedException">Completed or disposed.</exception>
    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        ObjectDisposedException.ThrowIf(_closed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(sizeHint);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(sizeHint, _slots.SlotBytes);
        long left = Length - Written;
        if (left == 0)
        {
            throw new InvalidOperationException($"All {Length} bytes are written: call CompleteAsync.");
        }

        if (_current is not null && _slots.SlotBytes - _filled < Math.Min(Math.Max(sizeHint, 1), left))
        {
            SendCurrent(); // the rest goes in a slot of its own
        }

        if (_current is null && !TryTakeNext())
        {
            throw new InvalidOperationException("No window slot is free yet (the node still reads the earlier parts): await FlushAsync, which waits for one, before asking for more memory.");
        }

        return _window.Slice(_slots.Offset(_current!.Value) + _filled, (int)Math.Min(_slots.SlotBytes - _filled, left));
    }

    /// <inheritdoc cref="GetMemory"/>
    public Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;

    /// <summary>Counts <paramref name="count"/> bytes written into the last memory returned; a full slot (or the last byte) is sent to the node at once.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative, or past the memory returned.</exception>
    /// <exception cref="ObjectDisposedException">Completed or disposed.</exception>
    public void Advance(int count)
    {
        ObjectDisposedException.ThrowIf(_closed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count == 0)
        {
            return;
        }

        if (_current is null || count > _slots.SlotBytes - _filled || count > Length - Written)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, "Advance goes past the memory GetMemory returned.");
        }

        _filled += count;
        Written += count;
        if (_filled == _slots.SlotBytes || Written == Length)
        {
            SendCurrent();
        }
    }

    /// <summary>
    /// Waits until <see cref="GetMemory"/> with any size hint will not need to wait: a slot is current,
    /// and the next is rented when the rest may not fit. It never waits while holding a slot: if the
    /// next one is not free yet, what the current slot holds is sent first (a shorter part).
    /// </summary>
    /// <param name="cancellationToken">Stops the wait (parts already sent stay in flight; dispose the writer to drop the Put).</param>
    /// <exception cref="TubeException">The node refused a part already sent (the Put cannot complete).</exception>
    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_closed, this);
        cancellationToken.ThrowIfCancellationRequested();
        if (_put.Failure is { } failure)
        {
            ExceptionDispatchInfo.Throw(failure);
        }

        // After this, GetMemory with any size hint succeeds without waiting: a slot is current, and
        // the next one is rented too when the rest might not fit in the current one's room.
        if (Written < Length && (_current is null || Length - Written > _slots.SlotBytes - _filled))
        {
            _next ??= RentNext();
            if (!_next.IsCompleted && _current is not null)
            {
                SendCurrent(); // never wait for a slot while holding one: a longer rental queued first may need it
            }

            await _next.WaitAsync(cancellationToken).ConfigureAwait(false);
            if (_current is null)
            {
                TryTakeNext();
            }
        }
    }

    /// <summary>Waits until the node has every part, then makes the data visible and returns its id; the writer is closed after.</summary>
    /// <param name="cancellationToken">Cancels the commit (the data is dropped then).</param>
    /// <exception cref="InvalidOperationException">Fewer than <see cref="Length"/> bytes are written (the writer stays open).</exception>
    public async Task<TubeId> CompleteAsync(CancellationToken cancellationToken = default)
    {
        using var call = _put.Client.Call("complete_put", device: _put.Device);
        call.Path = TubePath.HostStaged.Tag();
        try
        {
            return await CommitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    /// <summary><see cref="CompleteAsync"/> within a call that has its own span (<c>PutAsync</c>).</summary>
    internal async Task<TubeId> CommitAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_closed, this);
        if (Written != Length)
        {
            throw new InvalidOperationException($"{Written} of the Put's {Length} bytes are written.");
        }

        _closed = true; // the last Advance sent the last slot
        await ReturnPrefetchedAsync().ConfigureAwait(false);
        return await _put.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Drops the Put unless it was completed: its slots go back and the unfinished data is released once the parts in flight are answered.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_closed)
        {
            return;
        }

        _closed = true;
        if (_current is { } current)
        {
            _current = null;
            _slots.Return(current); // never sent: the node does not read it
        }

        await ReturnPrefetchedAsync().ConfigureAwait(false);
        await _put.AbandonAsync().ConfigureAwait(false);
    }

    private Task<WindowRange> RentNext() => _slots.RentAsync(1, _closing.Token).AsTask();

    /// <summary>Makes the rented next slot current if it is there; rents the one after when more will be needed.</summary>
    private bool TryTakeNext()
    {
        _next ??= RentNext();
        if (!_next.IsCompleted)
        {
            return false;
        }

        _current = _next.GetAwaiter().GetResult();
        _next = Length - Written > _slots.SlotBytes ? RentNext() : null; // rented while this one fills
        return true;
    }

    /// <summary>Sends what the current slot holds as one part; the slot goes back when the node has answered.</summary>
    private void SendCurrent()
    {
        var range = _current!.Value;
        _current = null;
        if (_filled == 0)
        {
            _slots.Return(range);
            return;
        }

        _put.Send(_sent, _slots.Offset(range), _filled, () => _slots.Return(range));
        _sent += _filled;
        _filled = 0;
    }

    private async Task ReturnPrefetchedAsync()
    {
        await _closing.CancelAsync().ConfigureAwait(false);
        if (_next is { } next)
        {
            _next = null;
            try
            {
                _slots.Return(await next.ConfigureAwait(false));
            }
            catch (OperationCanceledException)
            {
                // Never granted.
            }
        }

        _closing.Dispose();
    }
}
