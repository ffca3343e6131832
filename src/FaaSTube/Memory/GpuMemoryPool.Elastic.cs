namespace FaaSTube.Memory;

/// <summary>A slab is being returned to the device: importers must close it (<see cref="GpuMemoryPool.CloseSlab"/>).</summary>
/// <param name="SlabId">The slab's slot.</param>
/// <param name="Generation">Its generation.</param>
/// <param name="Importers">Importers that still have it open.</param>
public sealed record SlabRetiringEventArgs(int SlabId, int Generation, IReadOnlyList<long> Importers);

/// <summary>Elasticity (the paper's sizing rule), the slab retire protocol with importers, and statistics.</summary>
public sealed partial class GpuMemoryPool
{
    private ITimer? _trimTimer;

    /// <summary>Raised (under the grow lock) when a slab goes back to the device: (slab id, generation). Tests wait on it.</summary>
    internal event Action<int, int>? SlabFreed;

    /// <summary>
    /// Raised when a slab that importers have open starts retiring: tell them to close it. The slab
    /// takes no new allocations and is freed when the last importer closes it or is declared gone.
    /// </summary>
    public event EventHandler<SlabRetiringEventArgs>? SlabRetiring;

    /// <summary>
    /// What the elastic rule wants reserved now: the sum over functions whose window is active of
    /// p99 size x p99 concurrency, at least the floor.
    /// </summary>
    public long TargetBytes
    {
        get
        {
            var now = Now;
            long sum = 0;
            foreach (var window in _functions.Values)
            {
                var (reservation, active) = window.Evaluate(now, _options.StatisticsWindow, _options.MinIdleWindow);
                sum += active ? reservation : 0;
            }

            return Math.Max(_options.FloorBytes, sum);
        }
    }

    /// <summary>
    /// Returns slabs that have been empty for the idle window to the device, oldest first, while the
    /// pool stays at or above <see cref="TargetBytes"/>. Slabs that importers have open start retiring
    /// instead (see <see cref="SlabRetiring"/>). Also drops the statistics of functions with no live
    /// block and no arrival within the statistics window. Returns the bytes given back now.
    /// </summary>
    public long Trim()
    {
        ThrowIfDisposed();
        ForgetIdlePartitions();
        PruneFunctionWindows();
        long target = TargetBytes;
        var retiring = new List<SlabRetiringEventArgs>();
        long freed;
        lock (_growLock)
        {
            long before = _reserved;
            long active = _slabs.Where(s => s is { State: SlabState.Active }).Sum(s => s!.Capacity);
            var idle = _slabs
                .Where(s => s is { State: SlabState.Active, EmptySince: not null } && Now - s.EmptySince!.Value >= _options.MinIdleWindow)
                .OrderBy(s => s!.EmptySince)
                .ToList();
            foreach (var slab in idle)
            {
                if (active - slab!.Capacity < target)
                {
                    break;
                }

                if (RetireLocked(slab, retiring))
                {
                    active -= slab.Capacity;
                }
            }

            freed = before - _reserved;
        }

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
    public Devices.IpcMemoryHandle OpenSlab(int slabId, int generation, long importer) => FindSlab(slabId, generation).Open(importer);

    /// <summary>Records that <paramref name="importer"/> closed the slab; a retiring slab is freed when its last importer closes it.</summary>
    /// <param name="slabId">The slab's slot.</param>
    /// <param name="generation">Its generation.</param>
    /// <param name="importer">Who closed it.</param>
    public void CloseSlab(int slabId, int generation, long importer)
    {
        var slab = FindSlab(slabId, generation);
        if (slab.Close(importer))
        {
            FreeRetired(slab);
        }
    }

    /// <summary>An importer is gone (its process died or its session closed): every slab it had open counts as closed.</summary>
    /// <param name="importer">The importer.</param>
    public void ImporterGone(long importer)
    {
        foreach (var slab in _slabs)
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
    public IReadOnlyList<SlabInfo> GetSlabs() => _slabs.Where(s => s is not null).Select(s => s!.Describe()).ToArray();

    /// <summary>A snapshot of the pool's numbers (the same the <c>FaaSTube</c> meter reports).</summary>
    public PoolStatistics GetStatistics()
    {
        var slabs = _slabs.Where(s => s is not null).Select(s => s!.FreeSpace()).ToArray();
        long free = slabs.Sum(s => s.Free);
        long largest = slabs.Select(s => s.Largest).DefaultIfEmpty(0).Max();
        long reserved = Interlocked.Read(ref _reserved);
        return new PoolStatistics(
            reserved,
            Interlocked.Read(ref _inUse),
            free,
            slabs.Length,
            _blocks.Count,
            Interlocked.Read(ref _allocations),
            Interlocked.Read(ref _evictions),
            Interlocked.Read(ref _evictedBytes),
            Interlocked.Read(ref _restores),
            Interlocked.Read(ref _restoredBytes),
            _spill.HostBytes,
            _spill.FileBytes,
            free == 0 ? 0 : 1 - (double)largest / free,
            TargetBytes);
    }

    /// <summary>
    /// Drops the windows of functions with no live block whose last arrival is older than the
    /// statistics window: they add nothing to <see cref="TargetBytes"/> (no recent sample), and
    /// function names come from clients, so keeping them would grow the node without bound. An
    /// allocation racing with the drop takes a fresh window (<see cref="FunctionWindow.TryArrive"/>).
    /// </summary>
    private void PruneFunctionWindows()
    {
        var now = Now;
        foreach (var entry in _functions)
        {
            if (entry.Value.TryRetire(now, _options.StatisticsWindow))
            {
                _functions.TryRemove(entry);
            }
        }
    }

    /// <summary>Starts retiring an empty slab; frees it now when no importer has it open. False if it is no longer empty.</summary>
    private bool RetireLocked(Slab slab, List<SlabRetiringEventArgs> retiring)
    {
        lock (slab.Lock)
        {
            if (slab.EmptySince is null || slab.State != SlabState.Active)
            {
                return false;
            }

            if (slab.BeginRetire(out var importers))
            {
                FreeSlabLocked(slab);
            }
            else
            {
                retiring.Add(new SlabRetiringEventArgs(slab.Id, slab.Generation, importers));
            }

            return true;
        }
    }

    private void FreeRetired(Slab slab)
    {
        lock (_growLock)
        {
            if (slab.State == SlabState.Retiring)
            {
                FreeSlabLocked(slab);
            }
        }

        SignalMemoryChange();
    }

    /// <summary>Returns a slab's memory to the device; its slot's descriptors go stale. Holds the grow lock.</summary>
    private void FreeSlabLocked(Slab slab)
    {
        slab.State = SlabState.Freed;
        slab.Buffer.Dispose();
        var slabs = (Slab?[])_slabs.Clone();
        slabs[slab.Id] = null;
        _slabs = slabs;
        _reserved -= slab.Capacity;
        PoolLog.SlabFreed(_logger, Device.Ordinal, slab.Id, slab.Capacity, _reserved);
        SlabFreed?.Invoke(slab.Id, slab.Generation);
    }

    private Slab FindSlab(int slabId, int generation)
    {
        ThrowIfDisposed();
        var slabs = _slabs;
        if ((uint)slabId >= (uint)slabs.Length || slabs[slabId] is not { } slab || slab.Generation != generation)
        {
            throw new PoolException(PoolError.Stale, $"Slab {slabId} generation {generation} is not held by the pool.");
        }

        return slab;
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
    /// every block lives in a slab of its own partition, and a slab still being cleared holds none.
    /// For tests after every step; takes every lock, so not for hot paths.
    /// </summary>
    internal void CheckInvariants()
    {
        var slabs = _slabs;
        long inUse = 0;
        foreach (var slab in slabs)
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

                        ranges.Add((block.Offset, block.Rounded, What: block.ToString()));
                        inUse += block.Rounded;
                    }
                }
            }

            ranges.Sort((a, b) => a.Offset.CompareTo(b.Offset));
            long cursor = 0;
            foreach (var (offset, size, what) in ranges)
            {
                if (offset != cursor || offset % ExtentAllocator.Alignment != 0 || size <= 0)
                {
                    throw new InvalidOperationException($"Slab {slab.Id}: {what} at [{offset}, +{size}) does not start at {cursor} (overlap, gap or misalignment).");
                }

                cursor += size;
            }

            if (ranges.Zip(ranges.Skip(1)).Any(p => p.First.What == "free" && p.Second.What == "free"))
            {
                throw new InvalidOperationException($"Slab {slab.Id}: adjacent free extents were not merged.");
            }

            if (extents.Sum(e => e.Size) != free)
            {
                throw new InvalidOperationException($"Slab {slab.Id}: free extents sum to {extents.Sum(e => e.Size)}, the allocator says {free}.");
            }

            if (cursor != slab.Capacity)
            {
                throw new InvalidOperationException($"Slab {slab.Id}: blocks and free extents cover {cursor} of {slab.Capacity} bytes.");
            }
        }

        long reserved = slabs.Where(s => s is not null).Sum(s => s!.Capacity);
        if (reserved != Interlocked.Read(ref _reserved) || inUse != Interlocked.Read(ref _inUse))
        {
            throw new InvalidOperationException($"Counters drifted: reserved {_reserved} (slabs say {reserved}), in use {_inUse} (blocks say {inUse}).");
        }
    }
}
