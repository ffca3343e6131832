namespace FaaSTube.Diagnostics;

/// <summary>
/// The attribute names of FaaSTube's metrics and spans (docs/architecture.md, "Telemetry"): every one
/// in the <c>faastube.*</c> namespace but <c>error.type</c>, which is the conventions' own. Values
/// are lower snake case.
/// </summary>
internal static class TelemetryTags
{
    /// <summary>The GPU's ordinal in its node (an int).</summary>
    public const string GpuIndex = "faastube.gpu.index";

    /// <summary>The GPU a peer copy reads from (spans only; <c>faastube.gpu.index</c> is where it writes).</summary>
    public const string SourceGpuIndex = "faastube.source_gpu.index";

    /// <summary>The client's workflow (spans only: unbounded).</summary>
    public const string Workflow = "faastube.workflow";

    /// <summary>How data came: <c>zero_copy</c>, <c>peer_copy</c>, <c>restored</c>, <c>host_staged</c>, <c>node_fetch</c>, or <c>control</c> for a request that moves none.</summary>
    public const string Path = "faastube.path";

    /// <summary>A client call (<c>put</c>, <c>get</c>, ...) or a node request (<c>put_begin</c>, <c>get</c>, ...).</summary>
    public const string Operation = "faastube.operation.name";

    /// <summary>The data's id (spans only).</summary>
    public const string DataId = "faastube.data.id";

    /// <summary>The node's session id (spans only).</summary>
    public const string SessionId = "faastube.session.id";

    /// <summary>The transfer scheduler's tenant (the node's: the session's workflow).</summary>
    public const string Tenant = "faastube.tenant";

    /// <summary>A transfer's direction: <c>host_to_device</c> or <c>device_to_host</c>.</summary>
    public const string TransferDirection = "faastube.transfer.direction";

    /// <summary>Bytes handed over by the node: <c>receive</c> (a Put's parts) or <c>transmit</c> (a Get).</summary>
    public const string NodeIoDirection = "faastube.node.io.direction";

    /// <summary>A client's host copy: <c>to_window</c> or <c>from_window</c>.</summary>
    public const string HostCopyDirection = "faastube.host_copy.direction";

    /// <summary>Pool memory: <c>in_use</c> (resident blocks) or <c>free</c> (reserved, not in use); their sum is what the pool reserved.</summary>
    public const string MemoryState = "faastube.pool.memory.state";

    /// <summary>Where evicted data lies: <c>host</c> (memory) or <c>file</c>.</summary>
    public const string SpillTier = "faastube.pool.spill.tier";

    /// <summary>A move between the device and the spill store: <c>evict</c> or <c>restore</c>.</summary>
    public const string SpillDirection = "faastube.pool.spill.direction";

    /// <summary>A transfer's length in bytes (spans only).</summary>
    public const string TransferSize = "faastube.transfer.size";

    /// <summary>An eviction's or restore's length in bytes (spans only).</summary>
    public const string MoveSize = "faastube.pool.move.size";

    /// <summary>The conventions' <c>error.type</c>: the error code's name, or the exception's type.</summary>
    public const string ErrorType = "error.type";
}
