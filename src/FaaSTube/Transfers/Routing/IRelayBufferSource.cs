using FaaSTube.Devices;

namespace FaaSTube.Transfers.Routing;

/// <summary>
/// Where <see cref="MultiPathCopier"/> takes the staging buffers of a relay GPU (two chunk-sized
/// slots per relay and path, for as long as the copy runs). The node's are its pools
/// (<c>PoolRelayBuffers</c>), so relays count against the pool and are never evicted while
/// in use; without one, relays allocate plain device memory. Routing knows only this interface,
/// never the pool.
/// </summary>
internal interface IRelayBufferSource
{
    /// <summary>Rents <paramref name="bytes"/> of device memory on the source's GPU; disposing the rental gives it back.</summary>
    /// <param name="bytes">The slot's size.</param>
    /// <param name="cancellationToken">Cancels the wait for memory.</param>
    ValueTask<IRelayBuffer> RentAsync(int bytes, CancellationToken cancellationToken = default);
}

/// <summary>A relay slot rented from an <see cref="IRelayBufferSource"/>: device memory until disposed.</summary>
internal interface IRelayBuffer : IDisposable
{
    /// <summary>The slot, at least as long as asked for.</summary>
    DeviceMemory Memory { get; }
}
