using System.Buffers;
using FaaSTube.Channels.Client;

namespace FaaSTube.Channels;

/// <summary>
/// A range of the client's window (the shared memory the node DMAs from and to), rented with
/// <see cref="TubeClient.RentWindowAsync"/>: write the data into <see cref="Memory"/>, then hand the
/// buffer to <see cref="TubeClient.PutAsync(WindowBuffer, PutOptions?, CancellationToken)"/>, which
/// copies nothing on the host; or get one filled by <see cref="TubeClient.GetToWindowAsync"/>, which
/// copies nothing on the host either. The Put takes the buffer over (the range goes back once the node has
/// read it); dispose a buffer you do not put. Not thread-safe.
/// </summary>
/// <remarks>
/// Once the buffer is put or disposed, <see cref="Memory"/> and every <see cref="Memory{T}"/> taken
/// from it throw <see cref="ObjectDisposedException"/> when their span is asked for; a
/// <see cref="Span{T}"/> taken earlier must not be used after that (the range may already hold
/// another Put's data). Its contents when rented are whatever the window held last. Renting waits
/// while the window is lent: do not wait for a second rental while holding a buffer (as with two
/// locks, two callers doing so can wait for each other).
/// </remarks>
public sealed class WindowBuffer : IMemoryOwner<byte>
{
    private const int Rented = 0, Put = 1, Disposed = 2;

    private readonly WindowSlots _slots;
    private readonly WindowRange _range;
    private readonly Range _memory;
    private int _state;

    internal WindowBuffer(WindowSlots slots, WindowRange range, Memory<byte> window)
    {
        _slots = slots;
        _range = range;
        _memory = new Range(this, window);
    }

    /// <summary>The bytes asked for: the data a Put of this buffer sends.</summary>
    public int Length => _memory.Length;

    /// <summary>The window memory to write into.</summary>
    /// <exception cref="ObjectDisposedException">The buffer was put or disposed.</exception>
    public Memory<byte> Memory
    {
        get
        {
            ThrowIfNotRented();
            return _memory.Memory;
        }
    }

    /// <summary>Gives the range back (a buffer that was put or disposed already: nothing happens).</summary>
    public void Dispose()
    {
        if (Interlocked.CompareExchange(ref _state, Disposed, Rented) == Rented)
        {
            _slots.Return(_range);
        }
    }

    /// <summary>A Put takes the range over: from here on the buffer is closed and the Put returns the range.</summary>
    /// <exception cref="ArgumentException">Rented from another client.</exception>
    /// <exception cref="ObjectDisposedException">Put or disposed already.</exception>
    /// <summary>Where in the window this buffer lies (a Get into it names this offset).</summary>
    internal int WindowOffset => _slots.Offset(_range);

    internal WindowRange TakeForPut(WindowSlots slots)
    {
        if (!ReferenceEquals(slots, _slots))
        {
            throw new ArgumentException("This buffer was rented from another client's window.", "buffer");
        }

        int was = Interlocked.CompareExchange(ref _state, Put, Rented);
        return was == Rented ? _range : throw Closed(was);
    }

    private void ThrowIfNotRented()
    {
        int state = Volatile.Read(ref _state);
        if (state != Rented)
        {
            throw Closed(state);
        }
    }

    private ObjectDisposedException Closed(int state) => new(nameof(WindowBuffer), state == Put
        ? "This window buffer was handed to a Put: its range belongs to the node's copy now."
        : "This window buffer was disposed: its range went back to the window.");

    /// <summary>The range as memory that checks the buffer is still rented each time its span is taken.</summary>
    private sealed class Range(WindowBuffer owner, Memory<byte> window) : MemoryManager<byte>
    {
        public int Length => window.Length;

        public override Span<byte> GetSpan()
        {
            owner.ThrowIfNotRented();
            return window.Span;
        }

        /// <summary>Pins the window itself (its mapping stays until the handle is disposed).</summary>
        public override MemoryHandle Pin(int elementIndex = 0)
        {
            owner.ThrowIfNotRented();
            return window[elementIndex..].Pin();
        }

        public override void Unpin()
        {
            // The handle Pin returns unpins the window, not this range.
        }

        protected override void Dispose(bool disposing)
        {
            // The owner returns the range.
        }
    }
}
