using FaaSTube.Devices;

namespace FaaSTube.Channels;

/// <summary>
/// The client's slab mappings and who uses them: each slab is mapped once and shared by the buffers
/// on it; each buffer holds a <see cref="SlabUse"/> that ends exactly once (a second end is a no-op by
/// construction, so no path can make a count go wrong); a slab the node asked to close is unmapped
/// when its last use ends, and only then is the node told.
/// </summary>
internal sealed class ClientMappings(Func<(int Device, int Slab, int Generation), Task> closed)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<(int Device, int Slab, int Generation), Entry> _entries = [];
    private int _opened;
    private int _mapped;

    /// <summary>Slabs mapped since the client connected (each once, then reused).</summary>
    public int Opened => Volatile.Read(ref _opened);

    /// <summary>Slabs mapped now.</summary>
    public int Mapped => Volatile.Read(ref _mapped);

    /// <summary>A use of slab <paramref name="key"/>: its existing mapping, or a new one from <paramref name="open"/> (called under the table's lock).</summary>
    public SlabUse Use((int Device, int Slab, int Generation) key, Func<(DeviceBuffer Buffer, bool Owned)> open)
    {
        lock (_lock)
        {
            if (!_entries.TryGetValue(key, out var entry))
            {
                var (buffer, owned) = open();
                entry = new Entry(key, buffer, owned);
                _entries[key] = entry;
                if (owned)
                {
                    _opened++;
                    _mapped++;
                }
            }

            entry.Users++;
            return new SlabUse(this, entry);
        }
    }

    /// <summary>The node asked to close slab <paramref name="key"/>: closed now if nothing uses it, else when the last use ends.</summary>
    public void CloseRequested((int Device, int Slab, int Generation) key)
    {
        Entry? close = null;
        lock (_lock)
        {
            if (_entries.TryGetValue(key, out var entry))
            {
                entry.Closing = true;
                close = entry.Users == 0 ? Take(entry) : null;
            }
        }

        Close(close);
    }

    /// <summary>Unmaps every slab (the client is closing; the node counts its mappings as closed).</summary>
    public void DisposeAll()
    {
        List<Entry> all;
        lock (_lock)
        {
            all = [.. _entries.Values];
            _entries.Clear();
        }

        foreach (var entry in all.Where(e => e.Owned))
        {
            entry.Buffer.Dispose();
            Interlocked.Decrement(ref _mapped);
        }
    }

    private void End(Entry entry)
    {
        Entry? close = null;
        lock (_lock)
        {
            if (--entry.Users == 0 && entry.Closing)
            {
                close = Take(entry);
            }
        }

        Close(close);
    }

    /// <summary>Takes an entry out of the table (under the lock): whoever took it closes it.</summary>
    private Entry? Take(Entry entry) => _entries.Remove(entry.Key) ? entry : null;

    private void Close(Entry? entry)
    {
        if (entry is null)
        {
            return;
        }

        if (entry.Owned)
        {
            entry.Buffer.Dispose();
            Interlocked.Decrement(ref _mapped);
        }

        _ = closed(entry.Key);
    }

    private sealed class Entry((int Device, int Slab, int Generation) key, DeviceBuffer buffer, bool owned)
    {
        public (int Device, int Slab, int Generation) Key { get; } = key;

        public DeviceBuffer Buffer { get; } = buffer;

        /// <summary>False for a node in this process: its own memory, not the client's to unmap.</summary>
        public bool Owned { get; } = owned;

        public int Users { get; set; }

        public bool Closing { get; set; }
    }

    /// <summary>One buffer's use of a slab mapping; <see cref="Dispose"/> ends it, once.</summary>
    internal sealed class SlabUse(ClientMappings table, object entry) : IDisposable
    {
        private int _ended;

        public DeviceBuffer Slab => ((Entry)entry).Buffer;

        public (int Device, int Slab, int Generation) Key => ((Entry)entry).Key;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _ended, 1) == 0)
            {
                table.End((Entry)entry);
            }
        }
    }
}
