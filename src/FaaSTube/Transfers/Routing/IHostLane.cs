using FaaSTube.Devices;

namespace FaaSTube.Transfers.Routing;

/// <summary>
/// A GPU's scheduled link to the host, through which <see cref="MultiPathCopier"/> moves the host
/// hops of routed copies (the host fallback, harvested PCIe lanes), so that they share the link with
/// the GPU's other host transfers under one scheduler. <c>TransferEngine</c> is one; without
/// one, a hop is a plain stream copy. Routing knows only this interface, never the engine.
/// </summary>
internal interface IHostLane
{
    /// <summary>Copies host bytes to the lane's GPU; completes when they are there.</summary>
    /// <param name="source">Host bytes.</param>
    /// <param name="destination">Device memory of the same length on the lane's GPU.</param>
    /// <param name="cancellationToken">Stops between chunks.</param>
    ValueTask CopyToDeviceAsync(ReadOnlyMemory<byte> source, DeviceMemory destination, CancellationToken cancellationToken = default);

    /// <summary>Copies device memory of the lane's GPU to the host; completes when the bytes are there.</summary>
    /// <param name="source">Device memory on the lane's GPU.</param>
    /// <param name="destination">Host bytes of the same length.</param>
    /// <param name="cancellationToken">Stops between chunks.</param>
    ValueTask CopyToHostAsync(DeviceMemory source, Memory<byte> destination, CancellationToken cancellationToken = default);
}
