using System.Text.Json.Serialization;

namespace FaaSTube.Channels.Admin;

/// <summary>
/// What a node holds and does at one moment: the answer to the admin Status request
/// (docs/protocol.md, "The admin request"), and what <c>faastube status --json</c> prints. The JSON
/// field names are the properties' names in camel case and are stable; lists are capped by the node
/// (<see cref="StatusList{T}.More"/> says how many were left out).
/// </summary>
/// <param name="Schema">The document's version (1); a field is only ever added, never renamed.</param>
/// <param name="TakenUtc">When the node took the snapshot.</param>
/// <param name="UptimeSeconds">Seconds since the node started.</param>
/// <param name="ProcessId">The node's process id.</param>
/// <param name="Backend">The GPUs' backend: <c>cuda</c> or <c>simulated</c>.</param>
/// <param name="Gpus">Each GPU and its pool.</param>
/// <param name="Sessions">The clients connected now.</param>
/// <param name="Workflows">Data held, by workflow.</param>
/// <param name="Objects">The data ids held, oldest first.</param>
/// <param name="Transfers">Host transfers in flight on every GPU.</param>
/// <param name="Paths">Bytes the node handed over since it started, by path.</param>
/// <param name="Network">The network listener, when the node has one (null otherwise).</param>
internal sealed record NodeStatus(
    int Schema,
    DateTimeOffset TakenUtc,
    double UptimeSeconds,
    int ProcessId,
    string Backend,
    IReadOnlyList<GpuStatus> Gpus,
    StatusList<SessionStatus> Sessions,
    StatusList<WorkflowStatus> Workflows,
    StatusList<ObjectStatus> Objects,
    StatusList<TransferStatus> Transfers,
    IReadOnlyList<PathStatus> Paths,
    NetworkStatus? Network);

/// <summary>The node's network listener for remote clients.</summary>
/// <param name="EndPoint">Where it listens (<c>host:port</c>).</param>
/// <param name="Isolation"><c>process</c> (the network gateway runs UCX) or <c>in-process</c>.</param>
/// <param name="GatewayPid">The gateway's process id (0 while it is being started again; 0 in process).</param>
/// <param name="GatewayRestarts">How many times the gateway was started again after it died.</param>
internal sealed record NetworkStatus(string EndPoint, string Isolation, int GatewayPid, int GatewayRestarts);

/// <summary>A capped list: the first items, how many there are in all, and how many were left out.</summary>
/// <typeparam name="T">The item.</typeparam>
/// <param name="Total">How many there are in all.</param>
/// <param name="Items">The items listed (at most the request's limit and the node's cap).</param>
/// <param name="More">How many were not listed (<see cref="Total"/> less the count of <see cref="Items"/>).</param>
internal sealed record StatusList<T>(int Total, IReadOnlyList<T> Items, int More);

/// <summary>One GPU and its pool.</summary>
/// <param name="Index">The GPU's ordinal.</param>
/// <param name="Name">The device's name.</param>
/// <param name="TotalBytes">The device's memory.</param>
/// <param name="ReservedBytes">Device memory the pool holds (its slabs).</param>
/// <param name="InUseBytes">Bytes in resident blocks.</param>
/// <param name="FreeBytes">Reserved less in use.</param>
/// <param name="Slabs">Slabs the pool holds.</param>
/// <param name="Blocks">Live blocks, resident or evicted.</param>
/// <param name="EvictedBytes">Evicted data held outside the device now (host memory and files).</param>
/// <param name="EvictedBytesTotal">Bytes evicted since the node started.</param>
/// <param name="RestoredBytesTotal">Bytes restored since the node started.</param>
/// <param name="ArenaLeasedBytes">Pool memory leased to clients as arena ranges now (each carves its allocations there without asking).</param>
/// <param name="ArenaUnusedBytes">The part of <paramref name="ArenaLeasedBytes"/> no live allocation holds (ready for the clients, not for others).</param>
internal sealed record GpuStatus(int Index, string Name, long TotalBytes, long ReservedBytes, long InUseBytes, long FreeBytes, int Slabs, int Blocks, long EvictedBytes, long EvictedBytesTotal, long RestoredBytesTotal, long ArenaLeasedBytes, long ArenaUnusedBytes);

/// <summary>One client connection.</summary>
/// <param name="Id">The session id.</param>
/// <param name="Workflow">The workflow its Hello named.</param>
/// <param name="Function">The function its Hello named.</param>
/// <param name="Pid">The client's process id (SO_PEERCRED).</param>
/// <param name="Uid">The client's user id (SO_PEERCRED).</param>
/// <param name="Leases">Leases and unfinished Puts it holds.</param>
/// <param name="WindowBytes">Its shared-memory window.</param>
internal sealed record SessionStatus(long Id, string Workflow, string Function, int Pid, uint Uid, int Leases, long WindowBytes);

/// <summary>The data of one workflow.</summary>
/// <param name="Workflow">The workflow.</param>
/// <param name="Objects">Ids it holds (published or being written).</param>
/// <param name="Bytes">Their bytes (primary blocks, replicas not counted).</param>
/// <param name="EvictedBytes">Of those, bytes evicted from the GPU now.</param>
internal sealed record WorkflowStatus(string Workflow, int Objects, long Bytes, long EvictedBytes);

/// <summary>One data id.</summary>
/// <param name="Id">The id.</param>
/// <param name="Workflow">Its workflow.</param>
/// <param name="Bytes">Its length.</param>
/// <param name="State"><c>published</c>, or <c>writing</c> (a Put or Allocate not committed yet).</param>
/// <param name="ConsumersLeft">Consumers still to release it; null when it is kept until deleted.</param>
/// <param name="Gpu">The GPU of its primary block.</param>
/// <param name="Where"><c>gpu</c> (resident) or <c>evicted</c> (in the spill store).</param>
/// <param name="Replicas">GPUs holding a copy for consumers there.</param>
/// <param name="AgeSeconds">Seconds since it was registered.</param>
/// <param name="ExpiresInSeconds">Seconds until its TTL sweeps it; null without one.</param>
internal sealed record ObjectStatus(string Id, string Workflow, long Bytes, string State, int? ConsumersLeft, int Gpu, string Where, IReadOnlyList<int> Replicas, double AgeSeconds, double? ExpiresInSeconds);

/// <summary>A host transfer in flight.</summary>
/// <param name="Gpu">The GPU whose engine runs it.</param>
/// <param name="Id">The engine's transfer id.</param>
/// <param name="Direction"><c>host_to_device</c> or <c>device_to_host</c>.</param>
/// <param name="Tenant">The tenant it is scheduled for (a client's workflow).</param>
/// <param name="SloMilliseconds">Its SLO; null without one.</param>
/// <param name="Bytes">Its length.</param>
/// <param name="DoneBytes">Bytes moved so far.</param>
/// <param name="AgeSeconds">Seconds since it was submitted.</param>
internal sealed record TransferStatus(int Gpu, long Id, string Direction, string Tenant, double? SloMilliseconds, long Bytes, long DoneBytes, double AgeSeconds);

/// <summary>Bytes the node handed over on one path since it started.</summary>
/// <param name="Path"><c>zero_copy</c>, <c>peer_copy</c>, <c>restored</c>, <c>host_staged</c> or <c>node_fetch</c> (the <c>faastube.path</c> values).</param>
/// <param name="ReceivedBytes">Bytes clients put.</param>
/// <param name="TransmittedBytes">Bytes clients got.</param>
internal sealed record PathStatus(string Path, long ReceivedBytes, long TransmittedBytes);

/// <summary>The JSON of <see cref="NodeStatus"/>, generated at build time (trimming and AOT safe).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(NodeStatus))]
internal sealed partial class NodeStatusJson : JsonSerializerContext;
