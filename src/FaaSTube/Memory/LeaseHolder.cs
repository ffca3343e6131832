namespace FaaSTube.Memory;

/// <summary>
/// Who holds leases on pool blocks and keeps slabs open: a session, a process, the node's directory.
/// A block is freed when no holder has a lease left and no use is open; a slab that is retiring is
/// freed when no holder has it open any more.
/// </summary>
/// <param name="Value">The holder's number; the pool gives it no meaning beyond equality.</param>
public readonly record struct LeaseHolder(long Value)
{
    /// <inheritdoc/>
    public override string ToString() => $"holder {Value}";
}
