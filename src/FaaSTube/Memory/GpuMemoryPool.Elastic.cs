namespace FaaSTube.Memory;

/// <summary>A slab is being returned to the device: importers must close it (<see cref="GpuMemoryPool.CloseSlab"/>).</summary>
/// <param name="SlabId">The slab's slot.</param>
/// <param name="Generation">Its generation.</param>
/// <param name="Importers">Importers that still have it open.</param>
internal sealed record SlabRetiringEventArgs(int SlabId, int Generation, IReadOnlyList<LeaseHolder> Importers);

/// <summary>Elasticity (trimming to the target), the slab retire protocol with importers, and statistics.</summary>
public sealed partial class GpuMemoryPool
{
    private ITimer? _trimTimer;

    /// <summary>Raised (under the slab set's lock) when a slab goes back to the device: (slab id, generation). Tests wait on it.</summary>
    internal event Action<int, int>? SlabFreed;

    /// <summary>
    /// Raised when a slab that importers have open starts retiring: tell them to close it. The slab
    /// takes no new allocations and is freed when the last importer closes it or is declared gone.
    /// </summary>
    internal event EventHandler<SlabRetiringEventArgs>? SlabRetiring;

    /// <summary>
    /// What the elastic rule wants reserved now: the sum over active functions (an arrival within max(<see cref="GpuPoolOptions.MinIdleTime"/>, their p99 inter-arrival time)) of
    /// p99 size x p99 concurrency, at least the floor; plus the bytes of arena ranges leased to clients
    /// that no piece holds (memory they hold ready: the pool cannot give it back while they do). Arena
    /// pieces count as the allocations of their function; the ranges themselves are no function's arrivals.
    /// </summary>
    public long TargetBytes => _target.Bytes(Now) + _arena.UnusedBytes;

    /// <summary>
    /// Returns slabs that have been empty for <see cref="GpuPoolOptions.MinIdleTime"/> to the device, oldest first, while the
    /// pool stays at or above <see cref="TargetBytes"/>. Slabs that importers have open start retiring
    /// instead (see <see cref="SlabRetiring"/>). Also drops the statistics of functions with no live
    /// block and no arrival within <see cref="GpuPoolOptions.StatisticsPeriod"/>. Returns the bytes given back now.
    /// </summary>
    public long Trim()
    {
        ThrowIfDisposed();
        _quotas.ForgetIdle();
        _cacheQuotas.ForgetIdle();
        _target.Prune(Now);
        var retiring = new List<SlabRetiringEventArgs>();
        long freed = _slabs.Trim(TargetBytes, _options.MinIdleTime, retiring);
        RaiseRetiring(retiring);
        return freed;
    }

    /// <summary>
    /// Exports a slab (once; later calls reuse the handle) and records <paramref name="importer"/>
    /// as having it open, so the slab is not freed under it.
    /// </summary>
    /// <param name="slabId">The slab's slot (from a <see cref="BlockDescriptor"/>).</param>
    /// <param name="generation">Its generation.</param>
    /// <param name="importer">Who opens it (a session, a process).</param>
    /// <exception cref="PoolException"><see cref="PoolError.Stale"/>: no such slab or generation, or it is retiring.</exception>
    internal Devices.IpcMemoryHandle OpenSlab(int slabId, int generation, LeaseHolder importer) => FindSlab(slabId, generation).Open(importer);

    /// <summary>Records that <paramref name="importer"/> closed the slab; a retiring slab is freed when its last importer closes it.</summary>
    /// <param name="slabId">The slab's slot.</param>
    /// <param name="generation">Its generation.</param>
    /// <param name="importer">Who closed it.</param>
    internal void CloseSlab(int slabId, int generation, LeaseHolder importer)
    {
        var slab = FindSlab(slabId, generation);
        if (slab.Close(importer))
        {
            FreeRetired(slab);
        }
    }

    /// <summary>An importer is gone (its process died or its session closed): every slab it had open counts as closed.</summary>
    /// <param name="importer">The importer.</param>
    internal void ImporterGone(LeaseHolder importer)
    {
        foreach (var slab in _slabs.All)
        {
            if (slab is not null && slab.Close(importer))
            {
                FreeRetired(slab);
            }
        }
    }

    /// <summary>The device memory of a slab, for a consumer in this same process (which cannot IPC-open its own memory).</summary>
    internal Devices.DeviceBuffer SlabBuffer(int slabId, int generation) => FindSlab(slabId, generation).Buffer;

    /// <summary>The slabs held now.</summary>
    internal IReadOnlyList<SlabInfo> GetSlabs() => _slabs.All.Where(s => s is not null).Select(s => s!.Describe()).ToArray();

    /// <summary>
    /// A snapshot of the pool's numbers, the same the <c>FaaSTube</c> meter reports: reserved, in use
    /// and free bytes read from the slabs' extents, counts from the one place they are recorded.
    /// </summary>
    public PoolStatistics GetStatistics()
    {
        var usage = _slabs.Usage();
        return new PoolStatistics(
            usage.Reserved,
            usage.InUse,
            usage.Free,
            usage.Slabs,
            _blocks.Count,
            _counters.Allocations,
            _counters.Evictions,
            _counters.EvictedBytes,
            _counters.Restores,
            _counters.RestoredBytes,
            _spill.HostBytes,
            _spill.FileBytes,
            usage.Free == 0 ? 0 : 1 - (double)usage.LargestFree / usage.Free,
            TargetBytes)
        {
            ArenaLeasedBytes = _arena.LeasedBytes,
            ArenaUnusedBytes = _arena.UnusedBytes,
        };
    }

    private void FreeRetired(Slab slab)
    {
        _slabs.FreeRetired(slab);
        SignalMemoryChange();
    }

    private Slab FindSlab(int slabId, int generation)
    {
        ThrowIfDisposed();
        return _slabs.Find(slabId, generation);
    }

    private void RaiseRetiring(List<SlabRetiringEventArgs> retiring)
    {
        foreach (var args in retiring)
        {
            SlabRetiring?.Invoke(this, args);
        }
    }

    private void TrimQuietly()
    {
        if (Volatile.Read(ref _disposed) == 0)
        {
            try
            {
                Trim();
            }
            catch (ObjectDisposedException)
            {
                // Disposed between the check and the trim.
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                PoolLog.TrimFailed(_logger, e, Device.Ordinal);
                TrimFailed?.Invoke(e); // a timer callback: nothing it meets may end the process
            }
        }
    }

    /// <summary>Raised when the background trim failed (it runs again at the next interval).</summary>
    internal event Action<Exception>? TrimFailed;

    /// <summary>
    /// Walks every slab and block and throws when the books do not balance: blocks in a slab do not
    /// overlap each other or a free extent, are aligned, and with the free bytes cover the slab exactly;
    /// every block lives in a slab of its own partition, and a slab still being cleared holds none. A
    /// leased arena range counts as one block (its pieces lie inside it); once returned, its live
    /// pieces count as blocks of their own and the rest must be free.
    /// (Reserved and in-use bytes are not checked against anything: they are read from the slabs, so
    /// there is no second count to drift.) For tests after every step; takes every lock, so not for hot paths.
    /// </summary>
    internal void CheckInvariants()
    {
        foreach (var slab in _slabs.All)
        {
            if (slab is null)
            {
                continue;
            }

            var (free, extents) = slab.FreeRanges();
            var ranges = extents.Select(e => (e.Offset, e.Size, What: "free")).ToList();
            foreach (var block in _blocks.Values)
            {
                lock (block.Sync)
                {
                    if (block.Slab == slab)
                    {
                        if (!string.Equals(slab.Partition, block.Partition, StringComparison.Ordinal) || slab.State == SlabState.Clearing)
                        {
                            throw new InvalidOperationException($"Slab {slab.Id} ({slab.State}, partition '{slab.Partition}') holds {block} of partition '{block.Partition}'.");
                        }

                        if (block.CarvedFrom is { IsLeased: true })
                        {
                            continue; // a piece inside a leased arena range: the range's block covers its bytes (CarvedRange checks its pieces)
                        }

                        ranges.Add((block.Offset, block.Rounded, What: block.ToString()));
                    }
                }
            }

            SlabLayout.Check(slab, free, extents, ranges);
        }
    }
}
