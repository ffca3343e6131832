using System.Buffers.Binary;
using FaaSTube.Devices.Completion;
using FaaSTube.Native;
using FaaSTube.Native.Handles;

namespace FaaSTube.Devices.Cuda;

/// <summary>
/// A CUDA stream: ops are issued asynchronously, each followed by a blocking-sync event that the
/// stream's <see cref="CompletionThread{T}"/> waits for (sleeping in the driver). Everything the
/// stream needs later (the checksum's scratch word and pinned result, the kernel module) is taken
/// when the stream is made, so it keeps working after its device is disposed.
/// </summary>
internal sealed class CudaGpuStream : GpuStream
{
    private readonly CudaGpuDevice _device;
    private readonly SafeCudaChildHandle _stream;
    private readonly SemaphoreSlim _checksumGate = new(1, 1);
    private readonly CompletionThread<CudaCompletion> _completions;
    private readonly DeviceBuffer _checksumScratch;
    private readonly PinnedBuffer _checksumResult;
    private readonly CudaKernelModule? _kernels;
    private readonly Exception? _kernelsError;

    private CudaGpuStream(CudaGpuDevice device, int priority, SafeCudaChildHandle stream, bool owned)
        : base(device, priority, owned)
    {
        _device = device;
        _stream = stream;
        try
        {
            _checksumScratch = device.AllocateForStream(8);
            _checksumResult = device.AllocatePinnedForStream(8);
        }
        catch
        {
            _checksumScratch?.Dispose();
            _stream.Dispose();
            throw;
        }

        _kernels = device.AcquireKernels(out _kernelsError);
        _completions = new CompletionThread<CudaCompletion>($"FaaSTube CUDA completions ({device.Ordinal})", ReleaseResources);
    }

    /// <summary>A new stream of ours (non-blocking, at <paramref name="priority"/>; 0 normal, higher runs first).</summary>
    public static unsafe CudaGpuStream Create(CudaGpuDevice device, int priority)
    {
        var stream = new SafeCudaStreamHandle(device.Context);
        using (device.Context.Enter())
        {
            int least, greatest;
            CudaException.ThrowIfFailed(Interop.Cuda.cuCtxGetStreamPriorityRange(&least, &greatest));
            int cudaPriority = Math.Max(greatest, least - priority); // CUDA: lower number = higher priority
            nint handle;
            var result = Interop.Cuda.cuStreamCreateWithPriority(&handle, CuFlags.StreamNonBlocking, cudaPriority);
            if (result != CudaResult.Success)
            {
                stream.AbandonUnattached();
                CudaException.ThrowIfFailed(result, $"cuStreamCreateWithPriority(NON_BLOCKING, {cudaPriority})");
            }

            stream.Attach(handle);
        }

        return new CudaGpuStream(device, priority, stream, owned: true);
    }

    /// <summary>
    /// Borrows <paramref name="native"/>, a stream someone else created in the device's context (0:
    /// the context's legacy default stream): refused with <see cref="ArgumentException"/> when the
    /// driver says it lives in another context. Disposing the wrapper never destroys it.
    /// </summary>
    public static unsafe CudaGpuStream Wrap(CudaGpuDevice device, nint native)
    {
        int least, greatest, cudaPriority;
        using (device.Context.Enter())
        {
            nint context;
            var result = Interop.Cuda.cuStreamGetCtx(native, &context);
            if (result != CudaResult.Success)
            {
                throw new ArgumentException($"0x{native:x} is not a CUDA stream the driver knows.", nameof(native), new CudaException(result, "cuStreamGetCtx"));
            }

            if (context != device.Context.DangerousGetHandle())
            {
                throw new ArgumentException(
                    $"The stream 0x{native:x} lives in context 0x{context:x}, not in {device}'s primary context 0x{device.Context.DangerousGetHandle():x} (GpuDevice.NativeContext): create it there.",
                    nameof(native));
            }

            CudaException.ThrowIfFailed(Interop.Cuda.cuCtxGetStreamPriorityRange(&least, &greatest));
            CudaException.ThrowIfFailed(Interop.Cuda.cuStreamGetPriority(native, &cudaPriority), "cuStreamGetPriority");
        }

        var stream = new SafeBorrowedCudaStreamHandle(device.Context);
        stream.Attach(native);
        return new CudaGpuStream(device, Math.Max(0, least - cudaPriority), stream, owned: false);
    }

    private nint Stream => _stream.DangerousGetHandle();

    private protected override nint NativeHandleCore => Stream;

    private protected override ValueTask<ulong> SubmitAsync(StreamOp op) =>
        op.Kind == StreamOpKind.Checksum ? ChecksumAsync(op) : Issue(op, null);

    private protected override async ValueTask SynchronizeCoreAsync(CancellationToken cancellationToken) =>
        await Issue(default, null).AsTask().WaitAsync(cancellationToken).ConfigureAwait(false);

    /// <summary>Stops the completion thread once issued work has completed; it then frees the stream's resources.</summary>
    private protected override void DisposeCore() => _completions.Dispose();

    /// <summary>Runs on the completion thread after the last issued op completed.</summary>
    private void ReleaseResources()
    {
        _checksumScratch.Dispose();
        ((IDisposable)_checksumResult).Dispose();
        _kernels?.Release();
        _stream.Dispose();
    }

    /// <summary>Issues <paramref name="op"/> (nothing for a default op), then an event, and returns the completion.</summary>
    private unsafe ValueTask<ulong> Issue(StreamOp op, Func<ulong>? readResult)
    {
        bool added = false;
        _stream.DangerousAddRef(ref added);
        try
        {
            var cudaEvent = _device.RentEvent();
            try
            {
                using (_device.Context.Enter())
                {
                    if (op.Length > 0)
                    {
                        Enqueue(op);
                    }

                    CudaException.ThrowIfFailed(Interop.Cuda.cuEventRecord(cudaEvent.DangerousGetHandle(), Stream), "cuEventRecord");
                }
            }
            catch
            {
                _device.ReturnEvent(cudaEvent); // nothing was recorded on it: it is as good as new
                throw;
            }

            var completion = CudaCompletion.Rent();
            completion.ReadResult = readResult;
            completion.Watch(cudaEvent, _device.ReturnEvent);
            var task = completion.Task;
            if (!_completions.TryAdd(completion))
            {
                // The stream was disposed while this op was issued: the op is on the GPU, so wait for it
                // here rather than release its memory under it (a race only; never the common path).
                CompletionThread<CudaCompletion>.CompleteInline(completion);
            }

            return task;
        }
        finally
        {
            _stream.DangerousRelease();
        }
    }

    private unsafe void Enqueue(StreamOp op)
    {
        nuint n = (nuint)op.Length;
        switch (op.Kind)
        {
            case StreamOpKind.HostToDevice:
                CudaException.ThrowIfFailed(Interop.Cuda.cuMemcpyHtoDAsync(op.Destination.Address, (void*)op.Host, n, Stream));
                break;
            case StreamOpKind.DeviceToHost:
                CudaException.ThrowIfFailed(Interop.Cuda.cuMemcpyDtoHAsync((void*)op.Host, op.Source.Address, n, Stream));
                break;
            case StreamOpKind.DeviceToDevice when op.Source.Device == op.Destination.Device:
                CudaException.ThrowIfFailed(Interop.Cuda.cuMemcpyDtoDAsync(op.Destination.Address, op.Source.Address, n, Stream));
                break;
            case StreamOpKind.DeviceToDevice:
                CudaException.ThrowIfFailed(Interop.Cuda.cuMemcpyPeerAsync(
                    op.Destination.Address, ((CudaGpuDevice)op.Destination.Device).Context.DangerousGetHandle(),
                    op.Source.Address, ((CudaGpuDevice)op.Source.Device).Context.DangerousGetHandle(), n, Stream));
                break;
            case StreamOpKind.Memset:
                CudaException.ThrowIfFailed(Interop.Cuda.cuMemsetD8Async(op.Destination.Address, op.Value, n, Stream));
                break;
            case StreamOpKind.FillPattern:
                Launch(Kernels.FillPattern, op.Length, op.Destination.Address, (ulong)op.Length, op.Seed, 0UL);
                break;
            default:
                throw new InvalidOperationException($"{op.Kind} is not issued directly.");
        }
    }

    private CudaKernelModule Kernels =>
        _kernels ?? throw new PlatformNotSupportedException($"The built-in kernels are not available on {Device}: {_kernelsError?.Message}", _kernelsError);

    /// <summary>Zero a device word, add every mixed word into it, copy it to pinned memory; one checksum at a time per stream.</summary>
    private async ValueTask<ulong> ChecksumAsync(StreamOp op)
    {
        await _checksumGate.WaitAsync().ConfigureAwait(false);
        try
        {
            var pinned = _checksumResult;
            EnqueueChecksum(op, _checksumScratch, pinned);
            return await Issue(default, () => BinaryPrimitives.ReadUInt64LittleEndian(pinned.GetSpan())).ConfigureAwait(false);
        }
        finally
        {
            _checksumGate.Release();
        }
    }

    private unsafe void EnqueueChecksum(StreamOp op, DeviceBuffer scratch, PinnedBuffer result)
    {
        using var scope = _device.Context.Enter();
        CudaException.ThrowIfFailed(Interop.Cuda.cuMemsetD8Async(scratch.Address, 0, 8, Stream));
        Launch(Kernels.Checksum, op.Length, op.Source.Address, (ulong)op.Length, 0UL, scratch.Address);
        CudaException.ThrowIfFailed(Interop.Cuda.cuMemcpyDtoHAsync((void*)result.Pointer, scratch.Address, 8, Stream));
    }

    private unsafe void Launch(nint function, long bytes, ulong a0, ulong a1, ulong a2, ulong a3)
    {
        void** args = stackalloc void*[4];
        args[0] = &a0;
        args[1] = &a1;
        args[2] = &a2;
        args[3] = &a3;
        uint blocks = Kernels.BlocksFor(bytes);
        CudaException.ThrowIfFailed(Interop.Cuda.cuLaunchKernel(
            function, blocks, 1, 1, CudaKernelModule.ThreadsPerBlock, 1, 1, 0, Stream, args, null));
    }
}
