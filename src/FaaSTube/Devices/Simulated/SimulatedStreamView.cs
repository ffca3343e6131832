namespace FaaSTube.Devices.Simulated;

/// <summary>
/// A simulated stream wrapped by <see cref="GpuDevice.WrapStream"/>: its ops go into the owner's
/// queue, in order with the owner's own, and its synchronisation queues a marker behind everything
/// queued there (the simulated GPU's recorded event). It owns nothing: disposing it leaves the owner
/// running; once the owner is disposed, new work on the view throws <see cref="ObjectDisposedException"/>.
/// </summary>
internal sealed class SimulatedStreamView(SimulatedGpuStream owner) : GpuStream(owner.Device, owner.Priority, ownsNativeHandle: false)
{
    private protected override nint NativeHandleCore => owner.NativeHandle;

    private protected override ValueTask<ulong> SubmitAsync(StreamOp op) => owner.Enqueue(op);

    private protected override ValueTask SynchronizeCoreAsync(CancellationToken cancellationToken) => owner.SynchronizeQueuedAsync(cancellationToken);

    private protected override void DisposeCore()
    {
        // Borrowed: the owner's queue and worker stay.
    }
}
