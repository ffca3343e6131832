namespace FaaSTube.Channels.Names;

/// <summary>
/// One name in the node's <see cref="NameDirectory"/>: its current version (a committed
/// <see cref="DataEntry"/> the directory holds a lease on), the version's number, the load in
/// progress if any, and what the cache weighs. Changed only under the directory's lock.
/// </summary>
internal sealed class NamedObject(NameKey key)
{
    public NameKey Key { get; } = key;

    /// <summary>The version new Gets see; null while the first load runs.</summary>
    public DataEntry? Current { get; set; }

    /// <summary>The number of <see cref="Current"/> (1 for the first; 0 while there is none).</summary>
    public long Version { get; set; }

    /// <summary>The load in progress, owned by one session.</summary>
    public PendingLoad? Loading { get; set; }

    /// <summary>How many Gets found it.</summary>
    public long Requests { get; set; }

    /// <summary>What producing the current version took its loader (zero: not measured).</summary>
    public TimeSpan LoadTime { get; set; }
}

/// <summary>
/// A load of a name by the session <see cref="Session"/>: completes when a version is committed,
/// fails with <see cref="TubeError.LoadFailed"/> when the loader reports a failure, its session ends
/// (so a loader killed mid-load never leaves the name stuck) or its <see cref="Timer"/> fires
/// (<see cref="TubeNodeOptions.LoadTimeout"/>: nor does one that hangs). Its continuations run asynchronously.
/// </summary>
internal sealed class PendingLoad(long session, long startedAt)
{
    public long Session { get; } = session;

    /// <summary>When the load was handed to its loader (a <see cref="TimeProvider"/> timestamp): the node's own measure of how long it took, which bounds what the loader claims.</summary>
    public long StartedAt { get; } = startedAt;

    /// <summary>Fails the load when <see cref="TubeNodeOptions.LoadTimeout"/> has passed; disposed when the load ends.</summary>
    public ITimer? Timer { get; set; }

    /// <summary>Why the load failed (null while it runs or once committed); set under the directory's lock, read by a late commit.</summary>
    public string? Failure { get; set; }

    public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}
