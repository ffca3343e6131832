namespace FaaSTube.Devices.Simulated;

/// <summary>
/// One direction of one link in the simulated machine (a GPU's PCIe lane, an NVLink pair, on-device
/// memory). A copy takes latency + bytes / bandwidth and occupies the link alone for that long: it is
/// booked into the earliest free interval that starts no earlier than the copy could (bookings can
/// arrive out of virtual-time order when flows run on timelines of their own, so the link keeps its
/// busy intervals rather than only its last end). The virtual clock advances to each copy's end.
/// </summary>
internal sealed class SimulatedLink(string name, double bytesPerSecond, TimeSpan latency)
{
    private readonly Lock _lock = new();
    private readonly List<(TimeSpan Start, TimeSpan End)> _busy = []; // sorted, disjoint

    public string Name { get; } = name;

    public double BytesPerSecond { get; } = bytesPerSecond;

    /// <summary>How long <paramref name="bytes"/> occupy the link alone: latency + bytes / bandwidth.</summary>
    public TimeSpan Duration(long bytes) => latency + TimeSpan.FromSeconds(bytes / BytesPerSecond);

    /// <summary>Books <paramref name="bytes"/> on the link no earlier than <paramref name="notBefore"/>; returns the modelled end.</summary>
    public TimeSpan Book(long bytes, TimeSpan notBefore)
    {
        var duration = Duration(bytes);
        lock (_lock)
        {
            var start = notBefore;
            int at = 0;
            for (; at < _busy.Count; at++)
            {
                var (s, e) = _busy[at];
                if (e <= start)
                {
                    continue; // entirely before
                }

                if (s >= start + duration)
                {
                    break; // the gap before this interval fits
                }

                start = e; // overlaps: try after it
            }

            _busy.Insert(at, (start, start + duration));
            return start + duration;
        }
    }
}
