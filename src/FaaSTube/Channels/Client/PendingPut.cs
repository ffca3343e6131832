namespace FaaSTube.Channels.Client;

/// <summary>
/// One Put between its PutBegin and its PutCommit: the parts sent so far (each a DMA of a window
/// range the node answers), then the commit once all are answered, or, when anything failed or the
/// caller gave up, the unfinished data dropped after the last part in flight was answered (the
/// node never reads a range its renter has already reused).
/// </summary>
internal sealed class PendingPut
{
    private readonly TubeClient _client;
    private readonly PutOptions _options;
    private readonly List<Task> _parts = [];
    private Exception? _failure;

    private PendingPut(TubeClient client, TubeId id, PutOptions options)
    {
        _client = client;
        Id = id;
        _options = options;
    }

    /// <summary>The client that makes the Put.</summary>
    public TubeClient Client => _client;

    /// <summary>The GPU the data goes to.</summary>
    public int Device => _options.Device ?? 0;

    /// <summary>The id the node gave the unfinished Put.</summary>
    public TubeId Id { get; }

    /// <summary>The version a named Put's commit made (0 before, and for an id's Put).</summary>
    public long Version { get; private set; }

    /// <summary>The first part the node refused or that was lost, if any (later parts are not worth sending).</summary>
    public Exception? Failure => Volatile.Read(ref _failure);

    /// <summary>PutBegin: a block of <paramref name="length"/> bytes on the options' GPU.</summary>
    public static async Task<PendingPut> BeginAsync(TubeClient client, long length, PutOptions options, CancellationToken cancellationToken)
    {
        var id = await client.BeginPutAsync(length, options, cancellationToken).ConfigureAwait(false);
        return new PendingPut(client, id, options);
    }

    /// <summary>
    /// Sends the part [<paramref name="offset"/>, +<paramref name="length"/>) of the data, read from the
    /// window at <paramref name="windowOffset"/>; <paramref name="answered"/> runs once the node has
    /// answered it (or the connection is gone), before the part counts as done. Not cancellable: a
    /// part in flight is waited for, so its range is never reused under the node's DMA.
    /// </summary>
    /// <param name="offset">Where the part goes in the data.</param>
    /// <param name="windowOffset">The window range the node reads the part from.</param>
    /// <param name="length">The part's bytes.</param>
    /// <param name="answered">Runs once the node has answered.</param>
    /// <param name="source">A remote client's part sent from this memory instead of its window mirror (<see cref="Remote.RemoteConnection.PutPartFromAsync"/>); empty: from the window.</param>
    public void Send(long offset, int windowOffset, int length, Action answered, ReadOnlyMemory<byte> source = default)
    {
        _parts.Add(SendAsync());

        async Task SendAsync()
        {
            try
            {
                await _client.PutPartAsync(Id, offset, windowOffset, length, _options.Transfer?.Slo?.Ticks ?? 0, source).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, e, null);
                throw;
            }
            finally
            {
                answered();
            }
        }
    }

    /// <summary>Waits for every part, then makes the data visible; on any failure the data is dropped and the failure thrown.</summary>
    public async Task<TubeId> CommitAsync(CancellationToken cancellationToken)
    {
        try
        {
            await Task.WhenAll(_parts).ConfigureAwait(false);
            Version = await _client.CommitPutAsync(Id, _options, cancellationToken).ConfigureAwait(false);
            return Id;
        }
        catch (TubeException e) when (_options.Named is not null && e.InnerException is null && _parts.All(p => p.IsCompletedSuccessfully))
        {
            // The node answered the NamedCommit (an earlier one-way refusal, thrown before the call was
            // made, carries that refusal inside): whatever it answered, it took the named Put out
            // (docs/protocol.md), and a Release would be refused.
            throw;
        }
        catch
        {
            await AbandonAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Waits for the parts in flight (their errors no longer matter), then drops the unfinished data.</summary>
    public async Task AbandonAsync()
    {
        await Task.WhenAll(_parts).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await _client.DropAsync(Id).ConfigureAwait(false);
    }
}
