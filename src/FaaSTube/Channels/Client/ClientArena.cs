namespace FaaSTube.Channels.Client;

/// <summary>
/// A client's arena ranges, one in use per GPU and the next one leased ahead: an allocation that fits
/// is carved from the range in use with no round trip; when that range is half used the next is
/// leased in the background (one round trip, overlapped), so in steady state no allocation waits for
/// the node. A range that is exhausted is returned at once (the pieces carved from it live on, on the
/// node); ranges unused for <see cref="TubeClientOptions.ArenaIdleTime"/> are returned by a timer,
/// and all of them on dispose. A GPU where the node refuses ranges as a bad request (arenas off, the
/// size over its limit, too many ranges) is not asked again: allocations there take the round trip;
/// after any other refusal (memory short) only that allocation does.
/// </summary>
internal sealed class ClientArena : IDisposable
{
    private readonly Lock _sync = new();
    private readonly Dictionary<int, PerDevice> _devices = [];
    private readonly Func<int, Task<ArenaRange>> _lease;
    private readonly Func<ArenaRange, ValueTask> _return;
    private readonly ITimer _idle;
    private bool _disposed;

    public ClientArena(long rangeBytes, TimeSpan idleTime, TimeProvider time, Func<int, Task<ArenaRange>> lease, Func<ArenaRange, ValueTask> giveBack)
    {
        RangeBytes = rangeBytes;
        _lease = lease;
        _return = giveBack;
        _idle = time.CreateTimer(_ => ReturnIdle(), null, idleTime, idleTime);
    }

    /// <summary>The size of each range: larger allocations take the round trip.</summary>
    public long RangeBytes { get; }

    /// <summary>Ranges held now (in use and leased ahead), over all GPUs.</summary>
    public int Held
    {
        get
        {
            lock (_sync)
            {
                return _devices.Values.Sum(d => (d.Current is null ? 0 : 1) + (d.Next is { IsCompletedSuccessfully: true } ? 1 : 0));
            }
        }
    }

    /// <summary>Ranges leased so far (the round trips the arena took).</summary>
    public int Leases { get; private set; }

    /// <summary>
    /// A piece of <paramref name="bytes"/> on GPU <paramref name="device"/>: the range and the offset in
    /// it; null when the arena cannot serve it (too large, the node refuses ranges): allocate with a round trip.
    /// </summary>
    public async ValueTask<(ArenaRange Range, long Offset)?> CarveAsync(int device, long bytes)
    {
        if (bytes > RangeBytes)
        {
            return null;
        }

        while (true)
        {
            Task<ArenaRange> next;
            lock (_sync)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                var d = _devices.TryGetValue(device, out var existing) ? existing : _devices[device] = new PerDevice();
                if (d.Refused)
                {
                    return null;
                }

                d.Used = true;
                if (d.Current is { } current && current.TryCarve(bytes) is var offset and >= 0)
                {
                    if (current.Used * 2 >= current.Length && d.Next is null)
                    {
                        d.Next = LeaseAhead(device); // the next range, overlapped with this one's use
                    }

                    return (current, offset);
                }

                next = d.Next ??= LeaseAhead(device);
            }

            ArenaRange range;
            try
            {
                range = await next.ConfigureAwait(false);
            }
            catch (TubeException e)
            {
                lock (_sync)
                {
                    var d = _devices[device];
                    d.Refused |= e.Error == TubeError.BadRequest; // the node leases no such range (off, too large, too many): round trips from here on
                    d.Next = d.Next == next ? null : d.Next; // anything else (memory short now): this allocation takes the round trip, a later one asks again
                }

                return null;
            }

            ArenaRange? exhausted = null;
            lock (_sync)
            {
                var d = _devices[device];
                if (_disposed)
                {
                    exhausted = range; // given back below
                }
                else if (d.Next == next)
                {
                    d.Next = null;
                    exhausted = d.Current;
                    d.Current = range;
                }
            }

            if (exhausted is not null)
            {
                // Not awaited: the caller carves under its carve gate, and the return (the client's
                // ReturnRangeAsync) takes that gate too, so it goes out after every carve of the range.
                _ = GiveBackAsync(exhausted).AsTask();
            }
        }
    }

    /// <summary>Returns every range (the client is going).</summary>
    public async ValueTask ReturnAllAsync()
    {
        List<ArenaRange> all;
        lock (_sync)
        {
            _disposed = true;
            all = Take(_ => true);
        }

        _idle.Dispose();
        foreach (var range in all)
        {
            await GiveBackAsync(range).ConfigureAwait(false);
        }
    }

    public void Dispose()
    {
        _idle.Dispose();
        lock (_sync)
        {
            _disposed = true;
            foreach (var range in Take(_ => true))
            {
                range.Dispose(); // the connection is gone: the node returned them with the session
            }
        }
    }

    private Task<ArenaRange> LeaseAhead(int device)
    {
        Leases++;
        return _lease(device);
    }

    /// <summary>The timer: a GPU's ranges unused since the last tick go back (between one and two idle times after the last carve).</summary>
    private void ReturnIdle()
    {
        List<ArenaRange> idle;
        lock (_sync)
        {
            idle = Take(d =>
            {
                bool unused = !d.Used;
                d.Used = false;
                return unused;
            });
        }

        foreach (var range in idle)
        {
            _ = GiveBackAsync(range).AsTask();
        }
    }

    /// <summary>Takes the ranges of the GPUs <paramref name="which"/> picks (under <see cref="_sync"/>); a lease still in flight is given back when it lands.</summary>
    private List<ArenaRange> Take(Func<PerDevice, bool> which)
    {
        var taken = new List<ArenaRange>();
        foreach (var d in _devices.Values)
        {
            if (!which(d))
            {
                continue;
            }

            if (d.Current is { } current)
            {
                taken.Add(current);
                d.Current = null;
            }

            if (d.Next is { } next)
            {
                d.Next = null;
                if (next.IsCompletedSuccessfully)
                {
                    taken.Add(next.Result);
                }
                else
                {
                    _ = next.ContinueWith(t => GiveBackAsync(t.Result).AsTask(), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
                }
            }
        }

        return taken;
    }

    private async ValueTask GiveBackAsync(ArenaRange range)
    {
        range.Dispose();
        await _return(range).ConfigureAwait(false);
    }

    private sealed class PerDevice
    {
        public ArenaRange? Current { get; set; }

        public Task<ArenaRange>? Next { get; set; }

        public bool Used { get; set; }

        public bool Refused { get; set; }
    }
}
