using FaaSTube.Devices;

namespace FaaSTube.Channels;

/// <summary>
/// Device memory handed to a function by the node: a block of the node's pool, mapped into this
/// process (zero copy on the same GPU). From <see cref="TubeClient.AllocateAsync"/> it is writable
/// until published; from <see cref="TubeClient.GetAsync(TubeId, int, CancellationToken)"/> it is the
/// producer's data, to read. Disposing releases the lease (a consumer is done).
/// </summary>
public sealed class TubeBuffer : IAsyncDisposable
{
    private readonly TubeClient _client;
    private readonly ClientMappings.SlabUse _slabUse;
    private int _state; // 0 live, 1 published (handed to the node), 2 released

    internal TubeBuffer(TubeClient client, TubeId id, DeviceMemory memory, ClientMappings.SlabUse slabUse, bool writable, TubePath path)
    {
        Path = path;
        _client = client;
        Id = id;
        Memory = memory;
        _slabUse = slabUse;
        IsWritable = writable;
    }

    /// <summary>The data's id (for an allocation: the id it gets when published).</summary>
    public TubeId Id { get; }

    /// <summary>The bytes on the GPU, in this process's context.</summary>
    public DeviceMemory Memory { get; }

    /// <summary>The GPU.</summary>
    public GpuDevice Device => Memory.Device;

    /// <summary>How the data got here: mapped in place, copied from another GPU, or restored from host memory first.</summary>
    public TubePath Path { get; }

    /// <summary>True for an allocation not yet published.</summary>
    public bool IsWritable { get; }

    internal bool MarkPublished() => Interlocked.CompareExchange(ref _state, 1, 0) == 0;

    /// <summary>The publish failed: the allocation is the client's again (dispose releases it).</summary>
    internal void MarkUnpublished() => Interlocked.CompareExchange(ref _state, 0, 1);

    internal (int Device, int Slab, int Generation) Slab => _slabUse.Key;

    /// <summary>This buffer no longer uses its slab mapping (once; later calls do nothing).</summary>
    internal void EndSlabUse() => _slabUse.Dispose();

    /// <summary>Releases the lease (and for an unpublished allocation, drops it), one way. Never throws because the node is gone: the lease went with the connection.</summary>
    public async ValueTask DisposeAsync()
    {
        int was = Interlocked.Exchange(ref _state, 2);
        _slabUse.Dispose(); // ends once, whoever ends it first (a publish ends it too)
        if (was != 0)
        {
            return; // released before, or published: the lease went to the node
        }

        await _client.PostReleaseAsync(Id).ConfigureAwait(false);
    }
}
