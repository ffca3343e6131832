namespace FaaSTube.Channels.Client;

/// <summary>A run of <see cref="Slots"/> adjacent window slots starting at slot <see cref="First"/>.</summary>
internal readonly record struct WindowRange(int First, int Slots);

/// <summary>
/// The client's window cut into fixed-size, page-aligned slots, rented and returned: every Put part
/// and Get part reads or writes a slot the node DMAs, and a rented run of slots is the memory a
/// <see cref="WindowBuffer"/> hands out. Renting waits (asynchronously, cancellably) when no run of
/// the asked length is free; waiters are served first come, first served, so a long run is not
/// starved by short ones. A range is returned by whoever rented it, exactly once, and only after
/// the node has answered every request that reads or writes it.
/// </summary>
internal sealed class WindowSlots
{
    /// <summary>Slots are whole pages.</summary>
    public const int PageBytes = 4096;

    /// <summary>The largest slot: big enough that a part's round trip is small beside its copy, small enough that several are in flight.</summary>
    public const int MaxSlotBytes = 4 << 20;

    private readonly Lock _sync = new();
    private readonly bool[] _used;
    private readonly LinkedList<Waiter> _waiters = new();
    private int _inUse;

    /// <param name="windowBytes">The window's length (at least two pages).</param>
    public WindowSlots(int windowBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(windowBytes, 2 * PageBytes);
        SlotBytes = Math.Clamp(windowBytes / 4 & ~(PageBytes - 1), PageBytes, MaxSlotBytes);
        _used = new bool[windowBytes / SlotBytes];
    }

    /// <summary>Bytes per slot (a multiple of the page).</summary>
    public int SlotBytes { get; }

    /// <summary>Slots in the window.</summary>
    public int Count => _used.Length;

    /// <summary>The longest range one rental can have.</summary>
    public int MaxRangeBytes => Count * SlotBytes;

    /// <summary>Slots rented now.</summary>
    public int InUse
    {
        get
        {
            lock (_sync)
            {
                return _inUse;
            }
        }
    }

    /// <summary>The window offset of a range's first byte.</summary>
    public int Offset(WindowRange range) => range.First * SlotBytes;

    /// <summary>How many slots hold <paramref name="bytes"/>.</summary>
    public int SlotsFor(int bytes) => (int)(((long)bytes + SlotBytes - 1) / SlotBytes);

    /// <summary>Rents <paramref name="slots"/> adjacent slots, waiting until they are free.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Fewer than one slot, or more than the window holds.</exception>
    /// <exception cref="OperationCanceledException">Cancelled while waiting (nothing is rented then).</exception>
    public ValueTask<WindowRange> RentAsync(int slots, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(slots);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(slots, Count);
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<WindowRange>(cancellationToken);
        }

        Waiter waiter;
        lock (_sync)
        {
            if (_waiters.Count == 0 && TryTake(slots) is { } range)
            {
                return new ValueTask<WindowRange>(range);
            }

            waiter = new Waiter(slots);
            waiter.Node = _waiters.AddLast(waiter);
        }

        if (cancellationToken.CanBeCanceled)
        {
            waiter.Registration = cancellationToken.Register(() => Cancel(waiter, cancellationToken));
        }

        return new ValueTask<WindowRange>(waiter.Granted.Task);
    }

    /// <summary>Gives a rented range back and serves the waiters it lets through.</summary>
    public void Return(WindowRange range)
    {
        List<(Waiter, WindowRange)> granted;
        lock (_sync)
        {
            for (int i = range.First; i < range.First + range.Slots; i++)
            {
                if (!_used[i])
                {
                    throw new InvalidOperationException($"Window slot {i} was returned while not rented.");
                }

                _used[i] = false;
            }

            _inUse -= range.Slots;
            granted = ServeWaiters();
        }

        Grant(granted);
    }

    private void Cancel(Waiter waiter, CancellationToken cancellationToken)
    {
        List<(Waiter, WindowRange)> granted;
        lock (_sync)
        {
            if (waiter.Node?.List is null)
            {
                return; // already granted
            }

            _waiters.Remove(waiter.Node);
            granted = ServeWaiters(); // it may have been the head that held others back
        }

        waiter.Granted.TrySetCanceled(cancellationToken);
        Grant(granted);
    }

    /// <summary>Under the lock: the waiters at the head whose runs are free now, in order.</summary>
    private List<(Waiter, WindowRange)> ServeWaiters()
    {
        var granted = new List<(Waiter, WindowRange)>();
        while (_waiters.First is { } head && TryTake(head.Value.Slots) is { } range)
        {
            _waiters.RemoveFirst();
            granted.Add((head.Value, range));
        }

        return granted;
    }

    /// <summary>Outside the lock: completes the granted waiters (a registration is not disposed under the lock its callback takes).</summary>
    private static void Grant(List<(Waiter Waiter, WindowRange Range)> granted)
    {
        foreach (var (waiter, range) in granted)
        {
            waiter.Registration.Unregister();
            waiter.Granted.TrySetResult(range);
        }
    }

    /// <summary>Under the lock: the first free run of <paramref name="slots"/>, marked used.</summary>
    private WindowRange? TryTake(int slots)
    {
        int run = 0;
        for (int i = 0; i < _used.Length; i++)
        {
            run = _used[i] ? 0 : run + 1;
            if (run == slots)
            {
                int first = i - slots + 1;
                _used.AsSpan(first, slots).Fill(true);
                _inUse += slots;
                return new WindowRange(first, slots);
            }
        }

        return null;
    }

    private sealed class Waiter(int slots)
    {
        public int Slots { get; } = slots;

        public TaskCompletionSource<WindowRange> Granted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public LinkedListNode<Waiter>? Node { get; set; }

        public CancellationTokenRegistration Registration { get; set; }
    }
}
