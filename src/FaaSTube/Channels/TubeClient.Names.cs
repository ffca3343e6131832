using System.Diagnostics;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Devices;

namespace FaaSTube.Channels;

/// <summary>
/// Named objects (model weights and other long-lived data many functions read): Put under a name,
/// Get by name, Where by name, and <see cref="GetOrLoadAsync"/>, which loads a name once however many
/// callers miss it at the same time. Scoped to the workflow, or to a namespace the node grants it.
/// </summary>
public sealed partial class TubeClient
{
    /// <summary>
    /// Puts <paramref name="data"/> as the new version of <paramref name="name"/>: Gets from now on see it;
    /// readers holding the version before keep it until they dispose it.
    /// </summary>
    /// <param name="name">1 to 128 characters of ASCII letters, digits and <c>. _ - / : @ + =</c>.</param>
    /// <param name="data">The bytes (at least one).</param>
    /// <param name="options">Namespace, GPU, whether it is a cache entry.</param>
    /// <param name="cancellationToken">Stops between parts (the unfinished version is dropped).</param>
    /// <returns>The version made (1 for the name's first).</returns>
    public async Task<long> PutNamedAsync(string name, ReadOnlyMemory<byte> data, NamedOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (data.IsEmpty)
        {
            throw new ArgumentException("Put needs at least one byte.", nameof(data));
        }

        using var call = Call("put_named", device: options?.Device ?? 0);
        call.Path = TubePath.HostStaged.Tag();
        try
        {
            return await PutNamedCoreAsync(data, PutOptionsFor(name, options), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    /// <summary>
    /// The current version of <paramref name="name"/> on the options' GPU, read-only (dispose it when
    /// done): zero copy on the GPU that holds it, else a replica made there once over the peer path;
    /// restored first if the cache moved it to host memory. A load in progress is waited for.
    /// </summary>
    /// <param name="name">The name.</param>
    /// <param name="options">Namespace and GPU.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <exception cref="TubeException"><see cref="TubeError.NotFound"/>: no such name in the scope, or a namespace the workflow is not granted; <see cref="TubeError.LoadFailed"/>: the load waited for failed.</exception>
    public Task<TubeBuffer> GetNamedAsync(string name, NamedOptions? options = null, CancellationToken cancellationToken = default) =>
        GetNamedCoreAsync(name, loader: null, options, cancellationToken);

    /// <summary>
    /// Copies the current version of <paramref name="name"/> to host memory, for a consumer on the CPU: the
    /// node DMAs it into window slots and each is copied out while the next parts are in flight (as
    /// <see cref="GetAsync(TubeId, Memory{byte}, CancellationToken)"/> does for an id); restored first if
    /// the cache moved it. A load in progress is waited for. The version is held only during the copy.
    /// </summary>
    /// <param name="name">The name.</param>
    /// <param name="destination">At least as long as the object.</param>
    /// <param name="options">The namespace (its <see cref="NamedOptions.Device"/> is not used: the copy comes from the GPU that holds the version).</param>
    /// <param name="cancellationToken">Stops between parts (the version is let go all the same).</param>
    /// <returns>The object's length.</returns>
    /// <exception cref="TubeException"><see cref="TubeError.NotFound"/>: no such name in the scope; <see cref="TubeError.LoadFailed"/>: the load waited for failed.</exception>
    public async Task<long> GetNamedAsync(string name, Memory<byte> destination, NamedOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        using var call = Call("get_named_to_memory");
        try
        {
            var ok = await AskNamedAsync(name, device: -1, loader: null, options, cancellationToken).ConfigureAwait(false);
            call.Path = ok.Path.Tag();
            return await CopyLeasedToHostAsync(ok.Id, ok.Length, destination, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    /// <summary>
    /// The current version of <paramref name="name"/> as <see cref="GetNamedAsync(string, NamedOptions?, CancellationToken)"/> gets it; when there
    /// is none, the first caller (in any process) runs <paramref name="loader"/> and puts what it produces,
    /// and every caller at the same time waits for that load instead of loading again. A loader that
    /// throws (or whose process dies) wakes the waiters with <see cref="TubeError.LoadFailed"/>, and the
    /// next caller loads again.
    /// </summary>
    /// <param name="name">The name.</param>
    /// <param name="loader">Produces the object if nobody has.</param>
    /// <param name="options">Namespace, GPU, whether it is a cache entry.</param>
    /// <param name="cancellationToken">Cancels the call (a load this caller runs fails for its waiters).</param>
    public Task<TubeBuffer> GetOrLoadAsync(string name, NamedLoader loader, NamedOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(loader);
        return GetNamedCoreAsync(name, loader, options, cancellationToken);
    }

    /// <summary>Every GPU that holds a copy of <paramref name="name"/>'s current version (its first and its replicas), to place a function where its model is.</summary>
    /// <param name="name">The name.</param>
    /// <param name="options">The namespace.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<IReadOnlyList<int>> WhereNamedAsync(string name, NamedOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        using var call = Call("where_named");
        try
        {
            var ok = await CallAsync(new NamedWhere(options?.Namespace ?? "", name), cancellationToken).ConfigureAwait(false);
            return Enumerable.Range(0, 64).Where(d => (ok.Devices & (1L << d)) != 0).ToArray();
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    /// <summary>Removes <paramref name="name"/>; readers holding its version keep it until they dispose it.</summary>
    /// <param name="name">The name.</param>
    /// <param name="options">The namespace.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task DeleteNamedAsync(string name, NamedOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        using var call = Call("delete_named");
        try
        {
            await CallAsync(new NamedDelete(options?.Namespace ?? "", name), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    /// <summary>A named Put of host bytes through the window (the body of <see cref="PutAsync(ReadOnlyMemory{byte}, PutOptions?, CancellationToken)"/>); the version made.</summary>
    internal async Task<long> PutNamedCoreAsync(ReadOnlyMemory<byte> data, PutOptions options, CancellationToken cancellationToken)
    {
        if (data.IsEmpty)
        {
            throw new ArgumentException("A named object needs at least one byte.", nameof(data));
        }

        await using var writer = await CreatePutWriterAsync(data.Length, options, cancellationToken).ConfigureAwait(false);
        for (int offset = 0; offset < data.Length;)
        {
            await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
            var slot = writer.GetMemory();
            CopyCounted(data.Slice(offset, slot.Length), slot, "to_window");
            writer.Advance(slot.Length);
            offset += slot.Length;
        }

        await writer.CommitAsync(cancellationToken).ConfigureAwait(false);
        return writer.Version;
    }

    private static PutOptions PutOptionsFor(string name, NamedOptions? options) => new()
    {
        Device = options?.Device ?? 0,
        Named = new NamedTarget(options?.Namespace ?? "", name, options?.Cacheable ?? true, Stopwatch.GetTimestamp()),
    };

    private async Task<TubeBuffer> GetNamedCoreAsync(string name, NamedLoader? loader, NamedOptions? options, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        int device = options?.Device ?? 0;
        ArgumentOutOfRangeException.ThrowIfNegative(device);
        using var call = Call(loader is null ? "get_named" : "get_or_load", device: device);
        try
        {
            var ok = await AskNamedAsync(name, device, loader, options, cancellationToken).ConfigureAwait(false);
            call.Path = ok.Path.Tag();
            return await MapOrReleaseAsync(ok.Id, ok.Mapping, ok.Path, writable: false).ConfigureAwait(false);
        }
        catch (Exception e) when (call.Failed(e))
        {
            throw;
        }
    }

    /// <summary>Asks for the current version on <paramref name="device"/> (-1: for a host read) until it is found: loading it first when the node says so and there is a loader, asking again while another client loads it.</summary>
    private async Task<NamedGetOk> AskNamedAsync(string name, int device, NamedLoader? loader, NamedOptions? options, CancellationToken cancellationToken)
    {
        string ns = options?.Namespace ?? "";
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var ok = await CallAsync(new NamedGet(ns, name, device, PublishWaitMilliseconds, Load: loader is not null), cancellationToken).ConfigureAwait(false);
            switch (ok.Status)
            {
                case NamedGetStatus.Found:
                    return ok;
                case NamedGetStatus.Load when loader is not null:
                    await LoadAsync(name, loader, options, cancellationToken).ConfigureAwait(false);
                    break; // then Get what was loaded (or a newer version)
                case NamedGetStatus.Pending:
                    break; // another client still loads it: ask again (each ask waits on the node)
                default:
                    throw new InvalidDataException($"The node answered {ok.Status} to a Get without a loader.");
            }
        }
    }

    /// <summary>
    /// A load into GPU memory: a new version of the name allocated on the options' GPU and mapped here,
    /// written by <paramref name="write"/> (on the stream it is given, which is synchronised after it,
    /// or on its own streams, synchronised before it returns), then committed as the name's version: no
    /// host copy. If anything fails the allocation is dropped.
    /// </summary>
    internal async Task<long> LoadIntoAllocationAsync(long length, Func<TubeBuffer, GpuStream, CancellationToken, ValueTask> write, PutOptions options, CancellationToken cancellationToken)
    {
        var named = options.Named!;
        var ok = await CallAsync(new NamedAllocate(named.Namespace, named.Name, length, options.Device ?? 0), cancellationToken).ConfigureAwait(false);
        var buffer = await MapOrReleaseAsync(ok.Id, ok.Mapping, TubePath.ZeroCopy, writable: true).ConfigureAwait(false);
        try
        {
            using (var stream = buffer.Device.CreateStream())
            {
                await write(buffer, stream, cancellationToken).ConfigureAwait(false);
                await stream.SynchronizeAsync(cancellationToken).ConfigureAwait(false); // the data is complete before the node makes it visible
            }

            if (!buffer.MarkPublished())
            {
                throw new InvalidOperationException("The loader disposed the allocation it was to write.");
            }
        }
        catch
        {
            await buffer.DisposeAsync().ConfigureAwait(false); // drops the allocation on the node
            throw;
        }

        try
        {
            long loadTicks = Stopwatch.GetElapsedTime(named.StartedTimestamp).Ticks;
            return (await CallAsync(new NamedCommit(buffer.Id, named.Cacheable, loadTicks), cancellationToken).ConfigureAwait(false)).Version;
        }
        catch (Exception e) when (e is not TubeException)
        {
            // Not answered (cancelled before it went, or the node is gone): drop it; a refusal means the node took it out already.
            buffer.MarkUnpublished();
            await buffer.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        finally
        {
            buffer.EndSlabUse(); // this process no longer uses the mapping for it
        }
    }

    /// <summary>Runs the loader as this name's loader; its failure is reported to the node (its waiters get it) and thrown.</summary>
    private async Task LoadAsync(string name, NamedLoader loader, NamedOptions? options, CancellationToken cancellationToken)
    {
        try
        {
            await loader.PutAsync(this, PutOptionsFor(name, options), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            string message = e.Message.Length > 1024 ? e.Message[..1024] : e.Message;
            try
            {
                await CallAsync(new NamedLoadFailed(options?.Namespace ?? "", name, $"{e.GetType().Name}: {message}"), CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception report) when (report is TubeException or TubeNodeUnavailableException)
            {
                // The node is gone (it failed the load with the session) or forgot the load already.
            }

            throw;
        }
    }
}
