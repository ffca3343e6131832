using System.Diagnostics;
using FaaSTube.Devices;

namespace FaaSTube.Channels;

/// <summary>
/// How <see cref="TubeClient.GetOrLoadAsync"/> produces a named object when nobody has it yet: from
/// bytes, a stream, a file, a function that writes it into the Put's window slots, or a function that
/// writes it on the GPU into an allocation (its own kernel or a device copy). Only the first caller of a
/// name runs its loader; the others wait for that load.
/// </summary>
public abstract class NamedLoader
{
    private protected NamedLoader()
    {
    }

    /// <summary>The bytes <paramref name="load"/> returns.</summary>
    /// <param name="load">Produces the object (at least one byte).</param>
    public static NamedLoader FromBytes(Func<CancellationToken, ValueTask<ReadOnlyMemory<byte>>> load)
    {
        ArgumentNullException.ThrowIfNull(load);
        return new BytesLoader(load);
    }

    /// <summary><paramref name="length"/> bytes read from the stream <paramref name="open"/> returns (disposed after).</summary>
    /// <param name="length">The object's length.</param>
    /// <param name="open">Opens the stream.</param>
    public static NamedLoader FromStream(long length, Func<CancellationToken, ValueTask<Stream>> open)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        ArgumentNullException.ThrowIfNull(open);
        return new StreamLoader(length, open);
    }

    /// <summary>The file at <paramref name="path"/>.</summary>
    /// <param name="path">A readable file of at least one byte.</param>
    public static NamedLoader FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return new StreamLoader(new FileInfo(path).Length, _ => ValueTask.FromResult<Stream>(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.Asynchronous | FileOptions.SequentialScan)));
    }

    /// <summary><paramref name="length"/> bytes that <paramref name="write"/> writes into the Put's writer (its window slots: no host copy), all of them.</summary>
    /// <param name="length">The object's length.</param>
    /// <param name="write">Writes exactly <paramref name="length"/> bytes (see <see cref="TubePutWriter"/>: <c>FlushAsync</c>, <c>GetMemory</c>, <c>Advance</c>).</param>
    public static NamedLoader FromWriter(long length, Func<TubePutWriter, CancellationToken, ValueTask> write)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        ArgumentNullException.ThrowIfNull(write);
        return new WriterLoader(length, write);
    }

    /// <summary>
    /// <paramref name="length"/> bytes that <paramref name="write"/> writes on the GPU into an allocation
    /// (a <see cref="TubeBuffer"/> of the options' GPU, writable, mapped as <see cref="TubeClient.AllocateAsync"/>'s
    /// are): with its own kernel launched on the stream it is given (<see cref="GpuStream.NativeHandle"/>,
    /// in <see cref="GpuDevice.NativeContext"/>) or a device copy on it; work on a stream of its own
    /// (<see cref="GpuDevice.WrapStream"/>) it synchronises before it returns. The loader synchronises the
    /// stream it gave, then the allocation becomes the name's version as it is: no host copy. If
    /// <paramref name="write"/> throws, the allocation is dropped and the waiters get <see cref="TubeError.LoadFailed"/>.
    /// </summary>
    /// <param name="length">The object's length.</param>
    /// <param name="write">Writes all <paramref name="length"/> bytes of the allocation's <see cref="TubeBuffer.Memory"/> (do not dispose the buffer or the stream).</param>
    public static NamedLoader FromAllocation(long length, Func<TubeBuffer, GpuStream, CancellationToken, ValueTask> write)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        ArgumentNullException.ThrowIfNull(write);
        return new AllocationLoader(length, write);
    }

    /// <summary>Runs the load as a named Put with <paramref name="options"/>; the version it made.</summary>
    internal abstract Task<long> PutAsync(TubeClient client, PutOptions options, CancellationToken cancellationToken);

    private sealed class BytesLoader(Func<CancellationToken, ValueTask<ReadOnlyMemory<byte>>> load) : NamedLoader
    {
        internal override async Task<long> PutAsync(TubeClient client, PutOptions options, CancellationToken cancellationToken) =>
            await client.PutNamedCoreAsync(await load(cancellationToken).ConfigureAwait(false), options, cancellationToken).ConfigureAwait(false);
    }

    private sealed class StreamLoader(long length, Func<CancellationToken, ValueTask<Stream>> open) : NamedLoader
    {
        internal override async Task<long> PutAsync(TubeClient client, PutOptions options, CancellationToken cancellationToken)
        {
            await using var stream = await open(cancellationToken).ConfigureAwait(false);
            await using var writer = await client.CreatePutWriterAsync(length, options, cancellationToken).ConfigureAwait(false);
            while (writer.Written < length)
            {
                await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
                var slot = writer.GetMemory();
                int read = await stream.ReadAtLeastAsync(slot, slot.Length, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
                if (read < slot.Length)
                {
                    throw new EndOfStreamException($"The stream ended after {writer.Written + read} of the {length} bytes announced.");
                }

                writer.Advance(read);
            }

            await writer.CommitAsync(cancellationToken).ConfigureAwait(false);
            return writer.Version;
        }
    }

    private sealed class AllocationLoader(long length, Func<TubeBuffer, GpuStream, CancellationToken, ValueTask> write) : NamedLoader
    {
        internal override Task<long> PutAsync(TubeClient client, PutOptions options, CancellationToken cancellationToken) =>
            client.LoadIntoAllocationAsync(length, write, options, cancellationToken);
    }

    private sealed class WriterLoader(long length, Func<TubePutWriter, CancellationToken, ValueTask> write) : NamedLoader
    {
        internal override async Task<long> PutAsync(TubeClient client, PutOptions options, CancellationToken cancellationToken)
        {
            await using var writer = await client.CreatePutWriterAsync(length, options, cancellationToken).ConfigureAwait(false);
            await write(writer, cancellationToken).ConfigureAwait(false);
            await writer.CommitAsync(cancellationToken).ConfigureAwait(false);
            return writer.Version;
        }
    }
}
