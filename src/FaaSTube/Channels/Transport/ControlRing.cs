using FaaSTube.Channels.Protocol;
using Microsoft.Win32.SafeHandles;
using static FaaSTube.Channels.Transport.ControlRingLayout;
using FaaSTube.Platform;

namespace FaaSTube.Channels.Transport;

/// <summary>
/// One side of the shared-memory control path between a client and the node: a sealed memfd
/// (<see cref="SealedSharedMemory"/>) holding two single-producer single-consumer rings, requests (client
/// to node) and replies (node to client); layout in ControlRingLayout.cs. The client makes it with
/// <see cref="Create"/> and sends <see cref="Descriptor"/> to the node over the Unix socket
/// (UnixRights.cs); the node maps it with <see cref="Adopt"/> after checking seals and size. Both
/// sides then <see cref="Send"/> and <see cref="Receive"/> (the client sends requests and receives
/// replies, the node the other way round). The fast path makes no syscall; a side with nothing to
/// do spins briefly, then sleeps on a futex (ControlRing.Waiting.cs). Neither side trusts the
/// other's half of the memory (ControlRingConsumer.cs, ControlRingProducer.cs): a violation is an
/// <see cref="InvalidDataException"/>, after which this endpoint refuses every call (close the session).
/// One sender and one receiver at a time: concurrent calls of each are serialised here.
/// </summary>
internal sealed unsafe partial class ControlRing : IDisposable
{
    private readonly SealedSharedMemory _memory;
    private readonly ControlRingProducer _outgoing;
    private readonly ControlRingConsumer _incoming;
    private readonly Lock _sendLock = new();
    private readonly Lock _receiveLock = new();
    private volatile string? _broken; // the first violation seen: every later call fails with it
    private int _disposed;

    private ControlRing(SealedSharedMemory memory, int capacity, bool nodeSide)
    {
        _memory = memory;
        Capacity = capacity;
        IsNodeSide = nodeSide;
        var requests = (byte*)memory.Pointer + RingOffset(0, capacity);
        var replies = (byte*)memory.Pointer + RingOffset(1, capacity);
        _outgoing = new ControlRingProducer(nodeSide ? replies : requests, capacity);
        _incoming = new ControlRingConsumer(nodeSide ? requests : replies, capacity);
    }

    /// <summary>Bytes of each ring's data area.</summary>
    public int Capacity { get; }

    /// <summary>Bytes of the whole shared memory (what the client tells the node, for <see cref="Adopt"/>).</summary>
    public long TotalBytes => ControlRingLayout.TotalBytes(Capacity);

    /// <summary>The largest payload <see cref="Send"/> takes.</summary>
    public int MaxPayloadBytes => MaxPayload(Capacity);

    /// <summary>True on the node's side (sends replies, receives requests).</summary>
    public bool IsNodeSide { get; }

    /// <summary>The client's descriptor, to send to the node (the ring keeps owning it). The node's side has none.</summary>
    public SafeFileHandle Descriptor => _memory.Descriptor;

    /// <summary>The shared memory itself (tests write hostile headers through it).</summary>
    internal SealedSharedMemory Memory => _memory;

    /// <summary>
    /// How long a side spins before it sleeps on the futex: tens of microseconds where there are
    /// cores to spare (a reply on its way is caught without a syscall); none on two cores or fewer,
    /// where the spin takes the core the peer needs to answer (bench/results/2026-12-02-control-floor.md).
    /// </summary>
    internal TimeSpan SpinTime { get; set; } = Environment.ProcessorCount > 2 ? TimeSpan.FromMicroseconds(50) : TimeSpan.Zero;

    /// <summary>The client's side: new rings of <paramref name="capacityBytes"/> data bytes each (a power of two, 4 KiB to 16 MiB).</summary>
    public static ControlRing Create(int capacityBytes)
    {
        if (!IsValidCapacity(capacityBytes))
        {
            throw new ArgumentOutOfRangeException(nameof(capacityBytes), capacityBytes, $"A control ring holds a power of two from {MinCapacity} to {MaxCapacity} bytes.");
        }

        return new ControlRing(SealedSharedMemory.Create(checked((int)ControlRingLayout.TotalBytes(capacityBytes))), capacityBytes, nodeSide: false);
    }

    /// <summary>
    /// The node's side: takes ownership of the descriptor a client sent and maps it, only if it is a
    /// memfd sealed against shrinking and growing (<see cref="SealedSharedMemory.Adopt"/>) of exactly
    /// <paramref name="expectedBytes"/>, and <paramref name="expectedBytes"/> is the size of a valid
    /// layout (<see cref="TotalBytes"/> of a valid capacity). Anything else is refused with
    /// <see cref="TubeException"/> (<see cref="TubeError.BadRequest"/>) and the descriptor is closed.
    /// Nothing in the memory is read here: every counter is checked when it is used.
    /// </summary>
    public static ControlRing Adopt(SafeFileHandle descriptor, long expectedBytes)
    {
        ArgumentNullException.ThrowIfNull(descriptor);
        int capacity = CapacityOf(expectedBytes);
        if (capacity < 0)
        {
            descriptor.Dispose();
            throw new TubeException(TubeError.BadRequest, $"A control ring of {expectedBytes} bytes: it must be 2 x ({HeaderBytes} + a power of two from {MinCapacity} to {MaxCapacity}) bytes.");
        }

        return new ControlRing(WindowAdoption.Adopt(descriptor, expectedBytes), capacity, nodeSide: true);
    }

    /// <summary>Writes one frame if the outgoing ring has room now; false if it has not. Never waits.</summary>
    public bool TrySend(FrameType type, uint requestId, ReadOnlySpan<byte> payload)
    {
        CheckSend(type, payload);
        lock (_sendLock)
        {
            using var pin = Enter();
            return Write(type, requestId, payload);
        }
    }

    /// <summary>
    /// Writes one frame, waiting at most <paramref name="timeout"/> for room (the peer reads too
    /// slowly, or not at all): then <see cref="TimeoutException"/>. <see cref="InvalidDataException"/>
    /// if the peer's counters are impossible; <see cref="OperationCanceledException"/>,
    /// <see cref="ObjectDisposedException"/> when cancelled or disposed meanwhile.
    /// </summary>
    public void Send(FrameType type, uint requestId, ReadOnlySpan<byte> payload, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        CheckSend(type, payload);
        long deadline = Deadline(timeout);
        lock (_sendLock)
        {
            using var pin = Enter();
            while (!Write(type, requestId, payload))
            {
                WaitForChange(_outgoing.ConsumerSequence, _outgoing.SeenHead, _outgoing.Sleeper, deadline, timeout, cancellationToken, "room in the control ring (the peer does not read)");
            }
        }
    }

    /// <summary>Takes the next frame if one is there; never waits. <see cref="InvalidDataException"/> as <see cref="Receive"/>.</summary>
    public bool TryReceive(int maxPayloadBytes, out ControlFrame frame)
    {
        lock (_receiveLock)
        {
            using var pin = Enter();
            return Read(maxPayloadBytes, out frame);
        }
    }

    /// <summary>
    /// The next frame, waiting at most <paramref name="timeout"/> (<see cref="Timeout.InfiniteTimeSpan"/>:
    /// until one comes, or cancellation or dispose): then <see cref="TimeoutException"/>. A frame
    /// whose payload is over <paramref name="maxPayloadBytes"/>, or anything else a correct peer
    /// cannot have written, is an <see cref="InvalidDataException"/>. Blocks its thread: call it from
    /// a thread of its own (ControlRingReceiver.cs does, for async code).
    /// </summary>
    public ControlFrame Receive(int maxPayloadBytes, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxPayloadBytes);
        long deadline = Deadline(timeout);
        lock (_receiveLock)
        {
            using var pin = Enter();
            ControlFrame frame;
            while (!Read(maxPayloadBytes, out frame))
            {
                WaitForChange(_incoming.ProducerSequence, _incoming.Head, _incoming.Sleeper, deadline, timeout, cancellationToken, "control frame");
            }

            return frame;
        }
    }

    /// <summary>Wakes this side's waiters (they throw <see cref="ObjectDisposedException"/>) and unmaps the memory once the last call in flight has left it.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        ControlRingSleeper.WakeAll(_incoming.Sleeper);
        ControlRingSleeper.WakeAll(_outgoing.Sleeper);
        ((IDisposable)_memory).Dispose(); // unmapped when the last pin (a call in flight) lets go
    }

    private bool Write(FrameType type, uint requestId, ReadOnlySpan<byte> payload)
    {
        ThrowIfBroken();
        try
        {
            return _outgoing.TryWrite((byte)type, requestId, payload);
        }
        catch (InvalidDataException e)
        {
            _broken ??= e.Message;
            throw;
        }
    }

    private bool Read(int maxPayloadBytes, out ControlFrame frame)
    {
        ThrowIfBroken();
        try
        {
            return _incoming.TryRead(maxPayloadBytes, out frame);
        }
        catch (InvalidDataException e)
        {
            _broken ??= e.Message;
            throw;
        }
    }

    private void CheckSend(FrameType type, ReadOnlySpan<byte> payload)
    {
        if (!IsKnownType((byte)type))
        {
            throw new ArgumentOutOfRangeException(nameof(type), type, "Not a frame type.");
        }

        if (payload.Length > MaxPayloadBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(payload), payload.Length, $"A control frame's payload is at most {MaxPayloadBytes} bytes on rings of {Capacity}.");
        }
    }

    /// <summary>Holds the mapping for one call (it is unmapped only after the call leaves it).</summary>
    private System.Buffers.MemoryHandle Enter()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return _memory.Pin();
    }

    private void ThrowIfBroken()
    {
        if (_broken is { } reason)
        {
            throw new InvalidDataException($"The control ring was closed after a violation: {reason}");
        }
    }
}
