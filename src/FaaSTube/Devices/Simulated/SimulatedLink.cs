namespace FaaSTube.Devices.Simulated;

/// <summary>
/// One direction of one link in the simulated machine (a GPU's PCIe lane, an NVLink pair, on-device
/// memory). Work on a link is served in order: a copy starts when the link and its stream are both
/// free, takes latency + bytes / bandwidth, and the virtual clock advances to its end.
/// </summary>
internal sealed class SimulatedLink(string name, double bytesPerSecond, TimeSpan latency)
{
    private readonly Lock _lock = new();
    private TimeSpan _busyUntil;

    public string Name { get; } = name;

    public double BytesPerSecond { get; } = bytesPerSecond;

    /// <summary>Books <paramref name="bytes"/> on the link no earlier than <paramref name="notBefore"/>; returns the modelled end.</summary>
    public TimeSpan Book(long bytes, TimeSpan notBefore)
    {
        var duration = latency + TimeSpan.FromSeconds(bytes / BytesPerSecond);
        lock (_lock)
        {
            var start = notBefore > _busyUntil ? notBefore : _busyUntil;
            _busyUntil = start + duration;
            return _busyUntil;
        }
    }
}
