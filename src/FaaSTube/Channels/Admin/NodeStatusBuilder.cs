using System.Text.Json;
using FaaSTube.Devices;
using FaaSTube.Transfers;

namespace FaaSTube.Channels.Admin;

/// <summary>
/// The node's status as the admin request answers it (<see cref="NodeStatus"/>). Bounded whatever
/// the node holds: each list carries at most <see cref="MaxListed"/> items (and the request's limit)
/// and says how many more there are; names are at most 256 bytes (the protocol's limit), so the
/// answer stays under a few MiB even for a node with a million objects. The pass over the directory
/// keeps only the oldest objects it lists (a bounded heap) and one total per workflow.
/// </summary>
internal static class NodeStatusBuilder
{
    /// <summary>The most items of each list (sessions, workflows, objects, transfers) the node ever sends.</summary>
    public const int MaxListed = 1000;

    /// <summary>The status as UTF-8 JSON: the admin answer's payload.</summary>
    public static byte[] Json(TubeNode node, int limit) => JsonSerializer.SerializeToUtf8Bytes(Build(node, limit), NodeStatusJson.Default.NodeStatus);

    /// <summary>What <paramref name="node"/> holds and does now, each list capped at <paramref name="limit"/> (and <see cref="MaxListed"/>).</summary>
    public static NodeStatus Build(TubeNode node, int limit)
    {
        limit = Math.Clamp(limit, 0, MaxListed);
        var now = node.Services.TimeProvider.GetUtcNow();
        var gpus = node.Devices.Select(d =>
        {
            var s = d.Pool.GetStatistics();
            return new GpuStatus(d.Device.Ordinal, d.Device.Name, d.Device.TotalMemory, s.ReservedBytes, s.InUseBytes, s.FreeBytes, s.Slabs, s.Blocks,
                s.SpillHostBytes + s.SpillFileBytes, s.EvictedBytes, s.RestoredBytes, s.ArenaLeasedBytes, s.ArenaUnusedBytes);
        }).ToList();

        var sessions = node.Sessions.Where(s => s.Workflow.Length > 0).OrderBy(s => s.Id).ToList(); // bounded by MaxSessionsPerUser per user; admin connections (no Hello) are not listed
        var sessionList = List(sessions.Count, sessions.Take(limit).Select(s => new SessionStatus(s.Id, s.Workflow, s.Function, s.Pid, s.Uid, s.HeldCount, s.WindowBytes)).ToList());

        var (workflows, objects, objectCount) = Directory(node, limit, now);
        var transfers = Transfers(node, limit);
        var paths = Enum.GetValues<TubePath>()
            .Select(p => new PathStatus(p.Tag(), node.PathBytes(p, transmit: false), node.PathBytes(p, transmit: true))).ToList();

        return new NodeStatus(
            Schema: 1,
            TakenUtc: now,
            UptimeSeconds: node.Now.TotalSeconds,
            ProcessId: Environment.ProcessId,
            Backend: node.Gpus.Backend == GpuBackend.Cuda ? "cuda" : "simulated",
            Gpus: gpus,
            Sessions: sessionList,
            Workflows: List(workflows.Count, workflows.OrderByDescending(w => w.Bytes).ThenBy(w => w.Workflow, StringComparer.Ordinal).Take(limit).ToList()),
            Objects: List(objectCount, objects),
            Transfers: transfers,
            Paths: paths,
            Network: node.NetworkEndPoint is { } at
                ? new NetworkStatus(at.ToString(), node.Gateway is null ? "in-process" : "process", node.Gateway?.ProcessId ?? 0, node.Gateway?.Restarts ?? 0)
                : null);
    }

    /// <summary>One pass over the directory: a total per workflow, and the <paramref name="limit"/> oldest entries (a heap of that size).</summary>
    private static (List<WorkflowStatus> Workflows, List<ObjectStatus> Oldest, int Count) Directory(TubeNode node, int limit, DateTimeOffset now)
    {
        var totals = new Dictionary<string, (int Objects, long Bytes, long Evicted)>(StringComparer.Ordinal);
        var oldest = new PriorityQueue<DataEntry, long>(Comparer<long>.Create((a, b) => b.CompareTo(a))); // the newest (highest sequence) on top, to be dropped
        int count = 0;
        foreach (var entry in node.Directory.All)
        {
            count++;
            bool resident = entry.Block.IsResident;
            var t = totals.GetValueOrDefault(entry.Workflow);
            totals[entry.Workflow] = (t.Objects + 1, t.Bytes + entry.Length, t.Evicted + (resident ? 0 : entry.Length));
            if (limit == 0)
            {
                continue;
            }

            if (oldest.Count < limit)
            {
                oldest.Enqueue(entry, entry.Sequence);
            }
            else if (oldest.TryPeek(out _, out long newest) && entry.Sequence < newest)
            {
                oldest.DequeueEnqueue(entry, entry.Sequence);
            }
        }

        var nowOnClock = node.Now;
        var listed = oldest.UnorderedItems.Select(i => i.Element).OrderBy(e => e.Sequence).Select(e =>
        {
            int[] replicas;
            lock (e.Sync)
            {
                replicas = e.Replicas.Keys.Order().ToArray();
            }

            return new ObjectStatus(
                e.Id.ToString(),
                e.Workflow,
                e.Length,
                e.Committed ? "published" : "writing",
                e.KeepUntilDeleted ? null : e.RemainingConsumers,
                e.Device,
                e.Block.IsResident ? "gpu" : "evicted",
                replicas,
                Math.Max(0, (now - e.Registered).TotalSeconds),
                e.ExpiresAt is { } at ? Math.Max(0, (at - nowOnClock).TotalSeconds) : null);
        }).ToList();
        return (totals.Select(kv => new WorkflowStatus(kv.Key, kv.Value.Objects, kv.Value.Bytes, kv.Value.Evicted)).ToList(), listed, count);
    }

    private static StatusList<TransferStatus> Transfers(TubeNode node, int limit)
    {
        int total = 0;
        var listed = new List<TransferStatus>();
        foreach (var device in node.Devices)
        {
            var engine = device.Engine;
            var (count, jobs) = engine.InFlight(limit - listed.Count);
            total += count;
            var now = engine.Elapsed;
            listed.AddRange(jobs.Select(j => new TransferStatus(
                device.Device.Ordinal,
                j.Job.Id,
                TransferMetrics.Direction(j.Direction),
                j.Job.Request.Tenant,
                j.Job.Request.Slo?.TotalMilliseconds,
                j.Job.Length,
                j.Job.CompletedBytes,
                Math.Max(0, (now - j.Job.Submitted).TotalSeconds))));
        }

        return List(total, listed);
    }

    private static StatusList<T> List<T>(int total, List<T> items) => new(total, items, total - items.Count);
}
