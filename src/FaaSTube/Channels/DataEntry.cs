using FaaSTube.Memory;

namespace FaaSTube.Channels;

/// <summary>
/// One id in the node's directory: the primary block (on the GPU it was placed on), copies made
/// for consumers on other GPUs, and how long it lives. The directory holds a lease (holder 0) on
/// each block until the last consumer is done, the TTL expires, or it is deleted.
/// </summary>
internal sealed class DataEntry(TubeId id, string workflow, int device, PoolBlock block, long ownerSession)
{
    /// <summary>The directory's lease holder (sessions are numbered from 1).</summary>
    public static readonly LeaseHolder DirectoryHolder = new(0);

    public TubeId Id { get; } = id;

    public string Workflow { get; } = workflow;

    public int Device { get; } = device;

    public PoolBlock Block { get; } = block;

    public long Length => Block.Length;

    /// <summary>The session that is writing it; 0 once committed.</summary>
    public long OwnerSession { get; set; } = ownerSession;

    public bool Committed { get; set; }

    /// <summary>Made by Allocate (the client writes it in place and Publishes it), not by PutBegin (PutCommit).</summary>
    public bool IsAllocation { get; set; }

    /// <summary>Taken out of the directory (under <see cref="Sync"/>): it can no longer be committed or get replicas.</summary>
    public bool Removed { get; set; }

    /// <summary>Consumers still to release it; -1: unlimited (data kept until deleted).</summary>
    public int RemainingConsumers { get; set; }

    public TimeSpan? ExpiresAt { get; set; }

    /// <summary>When the directory registered it (the admin status shows its age).</summary>
    public DateTimeOffset Registered { get; set; }

    /// <summary>The order of registration in the directory (the admin status lists the oldest first, whatever the clock).</summary>
    public long Sequence { get; set; }

    /// <summary>Kept until deleted (<see cref="PutOptions.KeepUntilDeleted"/>): no consumer count, no expiry, never evicted.</summary>
    public bool KeepUntilDeleted { get; set; }

    public Dictionary<int, PoolBlock> Replicas { get; } = [];

    /// <summary>
    /// Completes when the entry is committed or removed (Gets of unpublished data wait on it). Its
    /// continuations run in place, on the thread that publishes (a Publish read from a control ring
    /// answers the waiting consumer without a thread hop); it is completed outside every lock.
    /// </summary>
    public TaskCompletionSource Settled { get; } = new();

    public Lock Sync { get; } = new();

    /// <summary>The block on <paramref name="device"/>, if there is one.</summary>
    public PoolBlock? On(int device) => device == Device ? Block : Replicas.GetValueOrDefault(device);

    public IEnumerable<PoolBlock> Blocks() => Replicas.Values.Prepend(Block);
}
