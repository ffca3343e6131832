using System.Buffers;

namespace FaaSTube.Devices;

/// <summary>
/// An ordered queue of copies and kernels on one device. Every call returns a <see cref="ValueTask"/>
/// that completes when the GPU finished the work (no thread waits for it). Long copies run as
/// pipelined chunks (<see cref="GpuSystemOptions.CopyChunkBytes"/>); cancellation is honoured between
/// chunks: chunks already issued complete, the rest of the destination is left untouched.
/// </summary>
public abstract partial class GpuStream : IDisposable
{
    private const int MaxChunksInFlight = 4;
    private int _disposed;

    private protected GpuStream(GpuDevice device, int priority, bool ownsNativeHandle = true)
    {
        Device = device;
        Priority = priority;
        OwnsNativeHandle = ownsNativeHandle;
    }

    /// <summary>The device the stream runs on.</summary>
    public GpuDevice Device { get; }

    /// <summary>The priority it was created with.</summary>
    public int Priority { get; }

    /// <summary>
    /// The backend's handle of the stream, for the function's own GPU code to enqueue work on it: on
    /// CUDA the <c>CUstream</c> (valid in <see cref="GpuDevice.NativeContext"/>; launch kernels on it
    /// with <c>cuLaunchKernel</c> or pass it to a framework); on the simulated GPU a process-local id
    /// that <see cref="GpuDevice.WrapStream"/> of the same device accepts (there is no native stream).
    /// Valid until the stream is disposed.
    /// </summary>
    public nint NativeHandle
    {
        get
        {
            ThrowIfDisposed();
            return NativeHandleCore;
        }
    }

    /// <summary>
    /// False for a stream made by <see cref="GpuDevice.WrapStream"/>: the native stream belongs to
    /// whoever created it, and disposing this object destroys nothing.
    /// </summary>
    public bool OwnsNativeHandle { get; }

    /// <summary>Copies host memory to device memory (lengths must match).</summary>
    /// <param name="source">Host bytes: any memory. A <see cref="PinnedBuffer"/>'s memory is copied directly at full DMA speed; other (pageable) memory goes through the stream's pinned staging ring, so the copy stays asynchronous.</param>
    /// <param name="destination">Device range of the same length.</param>
    /// <param name="cancellationToken">Checked between chunks.</param>
    public ValueTask CopyAsync(ReadOnlyMemory<byte> source, DeviceMemory destination, CancellationToken cancellationToken = default)
    {
        CheckDevice(destination, nameof(destination));
        CheckLengths(source.Length, destination.Length);
        return RunHostCopyAsync(source, StreamOpKind.HostToDevice, destination, cancellationToken);
    }

    /// <summary>Copies device memory to host memory (lengths must match).</summary>
    /// <param name="source">Device range.</param>
    /// <param name="destination">Host bytes of the same length: a <see cref="PinnedBuffer"/>'s memory directly, pageable memory through the staging ring.</param>
    /// <param name="cancellationToken">Checked between chunks.</param>
    public ValueTask CopyAsync(DeviceMemory source, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        CheckDevice(source, nameof(source));
        CheckLengths(source.Length, destination.Length);
        return RunHostCopyAsync(destination, StreamOpKind.DeviceToHost, source, cancellationToken);
    }

    /// <summary>Copies device memory to device memory, on this device or between peers (lengths must match).</summary>
    /// <param name="source">Device range (this device or another of the same system).</param>
    /// <param name="destination">Device range of the same length.</param>
    /// <param name="cancellationToken">Checked between chunks.</param>
    public ValueTask CopyAsync(DeviceMemory source, DeviceMemory destination, CancellationToken cancellationToken = default)
    {
        CheckBackend(source, nameof(source));
        CheckBackend(destination, nameof(destination));
        if (source.Device != Device && destination.Device != Device)
        {
            throw new ArgumentException($"A copy on {Device}'s stream must read or write {Device}.", nameof(destination));
        }

        CheckLengths(source.Length, destination.Length);
        return RunChunkedAsync(new StreamOp(StreamOpKind.DeviceToDevice, 0, source, destination, source.Length), cancellationToken);
    }

    /// <summary>Sets every byte of <paramref name="destination"/> to <paramref name="value"/>.</summary>
    /// <param name="destination">Device range.</param>
    /// <param name="value">The byte.</param>
    /// <param name="cancellationToken">Checked between chunks.</param>
    public ValueTask FillAsync(DeviceMemory destination, byte value, CancellationToken cancellationToken = default)
    {
        CheckDevice(destination, nameof(destination));
        return RunChunkedAsync(new StreamOp(StreamOpKind.Memset, 0, default, destination, destination.Length, value), cancellationToken);
    }

    /// <summary>Writes the seeded pattern of <see cref="Kernels.DataPattern"/> with a GPU kernel.</summary>
    /// <param name="destination">Device range.</param>
    /// <param name="seed">The pattern's seed.</param>
    /// <param name="cancellationToken">Checked before the launch.</param>
    public async ValueTask FillPatternAsync(DeviceMemory destination, ulong seed, CancellationToken cancellationToken = default)
    {
        CheckDevice(destination, nameof(destination));
        await RunKernelAsync(new StreamOp(StreamOpKind.FillPattern, 0, default, destination, destination.Length, Seed: seed), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The <see cref="Kernels.DataChecksum"/> of device memory, computed on the GPU (no copy to the host).</summary>
    /// <param name="source">Device range.</param>
    /// <param name="cancellationToken">Checked before the launch.</param>
    public async ValueTask<ulong> ChecksumAsync(DeviceMemory source, CancellationToken cancellationToken = default)
    {
        CheckDevice(source, nameof(source));
        ulong sum = await RunKernelAsync(new StreamOp(StreamOpKind.Checksum, 0, source, default, source.Length), cancellationToken).ConfigureAwait(false);
        return Kernels.DataChecksum.Finish(sum, source.Length);
    }

    /// <summary>
    /// Completes when all work issued so far has finished, whoever issued it: on CUDA an event is
    /// recorded on the stream and waited for (so work the function's own code or a framework
    /// enqueued on <see cref="NativeHandle"/>, or on a wrapped stream, is included); on the simulated
    /// GPU a marker is queued behind the stream's work.
    /// </summary>
    /// <param name="cancellationToken">Stops waiting (the work still runs).</param>
    public ValueTask SynchronizeAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        return SynchronizeCoreAsync(cancellationToken);
    }

    /// <summary>Releases the stream once its queued work has finished.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            DisposeCore();
            DisposeStaging();
        }
    }

    /// <inheritdoc/>
    public override string ToString() => OwnsNativeHandle ? $"stream (priority {Priority}) on {Device}" : $"wrapped stream on {Device}";

    /// <summary>Runs one op (already validated, memory referenced) and completes when it has finished; the result is a checksum's partial sum, else 0.</summary>
    private protected abstract ValueTask<ulong> SubmitAsync(StreamOp op);

    private protected abstract ValueTask SynchronizeCoreAsync(CancellationToken cancellationToken);

    private protected abstract nint NativeHandleCore { get; }

    private protected abstract void DisposeCore();

    private async ValueTask RunHostCopyAsync(Memory<byte> host, StreamOpKind kind, DeviceMemory device, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        cancellationToken.ThrowIfCancellationRequested();
        if (host.Length > 0 && !IsPinned(host))
        {
            await RunStagedCopyAsync(host, kind, device, cancellationToken).ConfigureAwait(false);
            return;
        }

        using MemoryHandle pin = host.Pin();
        nint pointer;
        unsafe
        {
            pointer = (nint)pin.Pointer;
        }

        var op = kind == StreamOpKind.HostToDevice
            ? new StreamOp(kind, pointer, default, device, device.Length)
            : new StreamOp(kind, pointer, device, default, device.Length);
        await RunChunkedAsync(op, cancellationToken).ConfigureAwait(false);
    }

    private ValueTask RunHostCopyAsync(ReadOnlyMemory<byte> host, StreamOpKind kind, DeviceMemory device, CancellationToken cancellationToken) =>
        RunHostCopyAsync(System.Runtime.InteropServices.MemoryMarshal.AsMemory(host), kind, device, cancellationToken);

    /// <summary>Cuts <paramref name="op"/> into chunks and keeps a few in flight, checking cancellation before each.</summary>
    private async ValueTask RunChunkedAsync(StreamOp op, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        cancellationToken.ThrowIfCancellationRequested();
        if (op.Length == 0)
        {
            return;
        }

        AddRefs(op);
        try
        {
            long chunk = Math.Max(8, Device.Options.CopyChunkBytes & ~7L);
            var inFlight = new Queue<ValueTask<ulong>>(MaxChunksInFlight);
            try
            {
                for (long done = 0; done < op.Length; done += chunk)
                {
                    if (cancellationToken.IsCancellationRequested)
                    {
                        break;
                    }

                    if (inFlight.Count == MaxChunksInFlight)
                    {
                        await inFlight.Dequeue().ConfigureAwait(false);
                    }

                    inFlight.Enqueue(SubmitAsync(Chunk(op, done, Math.Min(chunk, op.Length - done))));
                }
            }
            finally
            {
                // Issued chunks always finish before the memory is released, even on failure or cancellation.
                Exception? first = null;
                while (inFlight.Count > 0)
                {
                    try
                    {
                        await inFlight.Dequeue().ConfigureAwait(false);
                    }
                    catch (Exception e)
                    {
                        first ??= e;
                    }
                }

                if (first is not null)
                {
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
                }
            }

            cancellationToken.ThrowIfCancellationRequested();
        }
        finally
        {
            ReleaseRefs(op);
        }
    }

    private async ValueTask<ulong> RunKernelAsync(StreamOp op, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        cancellationToken.ThrowIfCancellationRequested();
        if (op.Length == 0)
        {
            return 0;
        }

        AddRefs(op);
        try
        {
            return await SubmitAsync(op).ConfigureAwait(false);
        }
        finally
        {
            ReleaseRefs(op);
        }
    }

    private static StreamOp Chunk(StreamOp op, long offset, long length) => op with
    {
        Host = op.Host == 0 ? 0 : op.Host + (nint)offset,
        Source = op.Source.Buffer is null ? default : op.Source.Slice(offset, length),
        Destination = op.Destination.Buffer is null ? default : op.Destination.Slice(offset, length),
        Length = length,
    };

    private static void AddRefs(StreamOp op)
    {
        op.Source.Buffer?.AddRef();
        try
        {
            op.Destination.Buffer?.AddRef();
        }
        catch
        {
            op.Source.Buffer?.Release();
            throw;
        }
    }

    private static void ReleaseRefs(StreamOp op)
    {
        op.Source.Buffer?.Release();
        op.Destination.Buffer?.Release();
    }

    private void CheckDevice(DeviceMemory memory, string name)
    {
        if (memory.Buffer is null)
        {
            throw new ArgumentNullException(name);
        }

        if (memory.Device != Device)
        {
            throw new ArgumentException($"{memory.Buffer} is on {memory.Device}; this stream runs on {Device}.", name);
        }
    }

    private void CheckBackend(DeviceMemory memory, string name)
    {
        if (memory.Buffer is null)
        {
            throw new ArgumentNullException(name);
        }

        if (memory.Device.Backend != Device.Backend)
        {
            throw new ArgumentException($"{memory.Buffer} is on another backend than {Device}.", name);
        }
    }

    private static void CheckLengths(long source, long destination)
    {
        if (source != destination)
        {
            throw new ArgumentException($"The source has {source} bytes and the destination {destination}; a copy needs equal lengths.", nameof(destination));
        }
    }

    private protected void ThrowIfDisposed()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            throw new ObjectDisposedException(ToString(), $"The {this} was disposed.");
        }
    }
}
