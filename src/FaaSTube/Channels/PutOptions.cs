namespace FaaSTube.Channels;

/// <summary>What to do with data after Put or Publish.</summary>
public sealed record PutOptions
{
    /// <summary>How many consumers will Get it; it is freed when that many have released it (default 1).</summary>
    public int Consumers { get; init; } = 1;

    /// <summary>Freed after this long even if not all consumers came (default: the node's).</summary>
    public TimeSpan? Ttl { get; init; }

    /// <summary>The GPU the consumer will run on: the data is placed there (default: GPU 0).</summary>
    public int? Device { get; init; }

    /// <summary>Long-lived shared data (model weights): kept until <see cref="TubeClient.DeleteAsync"/> removes it, never evicted or expired, any number of consumers.</summary>
    public bool KeepUntilDeleted { get; init; }

    /// <summary>SLO and priority of the host-to-GPU transfer. Its tenant is not taken from here: the node schedules every client's transfers under its workflow, so no client can join or split another's fair share.</summary>
    public Transfers.TransferRequest? Transfer { get; init; }

    /// <summary>Set by the named calls (<see cref="TubeClient.PutNamedAsync"/>): the Put begins and commits as a version of this name.</summary>
    internal NamedTarget? Named { get; init; }
}

/// <summary>A named Put's name, scope and cache setting, and when its load began (the reload cost it reports).</summary>
internal sealed record NamedTarget(string Namespace, string Name, bool Cacheable, long StartedTimestamp);
