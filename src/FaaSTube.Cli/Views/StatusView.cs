using System.Globalization;
using FaaSTube.Channels.Admin;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace FaaSTube.Cli.Views;

/// <summary>A node's status as Spectre.Console tables: what <c>faastube status</c> prints and <c>faastube top</c> redraws.</summary>
internal static class StatusView
{
    /// <summary>Every section of <paramref name="status"/>.</summary>
    /// <param name="status">The node's status.</param>
    /// <param name="rates">Bytes per second by path since the previous snapshot (<c>top</c>); null: totals only.</param>
    /// <param name="bars">Whether each GPU gets a usage bar (<c>top</c>).</param>
    public static IRenderable Render(NodeStatus status, IReadOnlyDictionary<string, (double Received, double Transmitted)>? rates = null, bool bars = false)
    {
        var sections = new List<IRenderable>
        {
            new Markup($"[bold]FaaSTube node[/] pid {status.ProcessId}, {Markup.Escape(status.Backend)}, up {Sizes.Age(status.UptimeSeconds)}, at {status.TakenUtc.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)} UTC"),
            Gpus(status, bars),
            Paths(status, rates),
            Sessions(status.Sessions),
            Workflows(status.Workflows),
            Objects(status.Objects),
            Transfers(status.Transfers),
        };
        return new Rows(sections);
    }

    private static Table Gpus(NodeStatus status, bool bars)
    {
        var table = NewTable("GPUs", "GPU", "name", "reserved", "in use", "free", "slabs", "blocks", "evicted now", "evicted total");
        if (bars)
        {
            table.AddColumn("usage (in use / reserved / device)");
        }

        foreach (var g in status.Gpus)
        {
            var cells = new List<IRenderable>
            {
                Text(g.Index.ToString(CultureInfo.InvariantCulture)), Text(g.Name), Text(Sizes.Bytes(g.ReservedBytes)), Text(Sizes.Bytes(g.InUseBytes)),
                Text(Sizes.Bytes(g.FreeBytes)), Text(g.Slabs.ToString(CultureInfo.InvariantCulture)), Text(g.Blocks.ToString(CultureInfo.InvariantCulture)),
                Text(Sizes.Bytes(g.EvictedBytes)), Text(Sizes.Bytes(g.EvictedBytesTotal)),
            };
            if (bars)
            {
                cells.Add(new BreakdownChart().Width(40).HideTags()
                    .AddItem("in use", g.InUseBytes, Color.Green)
                    .AddItem("free in pool", g.FreeBytes, Color.Yellow)
                    .AddItem("device", Math.Max(0, g.TotalBytes - g.ReservedBytes), Color.Grey));
            }

            table.AddRow(cells);
        }

        return table;
    }

    private static Table Paths(NodeStatus status, IReadOnlyDictionary<string, (double Received, double Transmitted)>? rates)
    {
        var table = rates is null
            ? NewTable("Bytes by path since start", "path", "received (put)", "transmitted (get)")
            : NewTable("Bytes by path", "path", "received (put)", "transmitted (get)", "put now", "get now");
        foreach (var p in status.Paths)
        {
            var cells = new List<string> { p.Path, Sizes.Bytes(p.ReceivedBytes), Sizes.Bytes(p.TransmittedBytes) };
            if (rates is not null)
            {
                var r = rates.GetValueOrDefault(p.Path);
                cells.Add(Sizes.Rate(r.Received));
                cells.Add(Sizes.Rate(r.Transmitted));
            }

            table.AddRow(cells.Select(Text));
        }

        return table;
    }

    private static Table Sessions(StatusList<SessionStatus> sessions)
    {
        var table = NewTable(Title("Sessions", sessions.Total), "session", "workflow", "function", "pid", "uid", "leases", "window");
        foreach (var s in sessions.Items)
        {
            table.AddRow(Text(Invariant(s.Id)), Text(s.Workflow), Text(s.Function), Text(Invariant(s.Pid)), Text(Invariant(s.Uid)), Text(Invariant(s.Leases)), Text(Sizes.Bytes(s.WindowBytes)));
        }

        return More(table, sessions.More);
    }

    private static Table Workflows(StatusList<WorkflowStatus> workflows)
    {
        var table = NewTable(Title("Workflows", workflows.Total), "workflow", "objects", "bytes", "evicted");
        foreach (var w in workflows.Items)
        {
            table.AddRow(Text(w.Workflow), Text(Invariant(w.Objects)), Text(Sizes.Bytes(w.Bytes)), Text(Sizes.Bytes(w.EvictedBytes)));
        }

        return More(table, workflows.More);
    }

    private static Table Objects(StatusList<ObjectStatus> objects)
    {
        var table = NewTable(Title("Objects by workflow, oldest first", objects.Total), "workflow", "id", "size", "state", "consumers left", "where", "age", "expires in");
        foreach (var o in objects.Items.OrderBy(o => o.Workflow, StringComparer.Ordinal))
        {
            string where = (o.Where == "gpu" ? $"GPU {o.Gpu}" : $"evicted (GPU {o.Gpu})") + (o.Replicas.Count > 0 ? $" + GPU {string.Join(", ", o.Replicas)}" : "");
            table.AddRow(
                Text(o.Workflow), Text(o.Id), Text(Sizes.Bytes(o.Bytes)), Text(o.State),
                Text(o.ConsumersLeft is { } c ? Invariant(c) : "kept"), Text(where), Text(Sizes.Age(o.AgeSeconds)),
                Text(o.ExpiresInSeconds is { } e ? Sizes.Age(e) : "-"));
        }

        return More(table, objects.More);
    }

    private static Table Transfers(StatusList<TransferStatus> transfers)
    {
        var table = NewTable(Title("Transfers in flight", transfers.Total), "GPU", "direction", "tenant", "SLO", "progress", "age");
        foreach (var t in transfers.Items)
        {
            double done = t.Bytes == 0 ? 1 : (double)t.DoneBytes / t.Bytes;
            table.AddRow(
                Text(Invariant(t.Gpu)), Text(t.Direction), Text(t.Tenant),
                Text(t.SloMilliseconds is { } slo ? slo.ToString("0.#", CultureInfo.InvariantCulture) + " ms" : "-"),
                Text($"{Sizes.Bytes(t.DoneBytes)} / {Sizes.Bytes(t.Bytes)} ({done.ToString("P0", CultureInfo.InvariantCulture)})"),
                Text(Sizes.Age(t.AgeSeconds)));
        }

        return More(table, transfers.More);
    }

    private static string Title(string what, int total) => $"{what} ({Invariant(total)})";

    private static Table NewTable(string title, params string[] columns)
    {
        var table = new Table { Title = new TableTitle(title, new Style(decoration: Decoration.Bold)), Border = TableBorder.Rounded };
        foreach (var column in columns)
        {
            table.AddColumn(new TableColumn(column));
        }

        return table;
    }

    /// <summary>The table's caption says how many items the node did not list (its lists are capped).</summary>
    private static Table More(Table table, int more)
    {
        if (table.Rows.Count == 0)
        {
            table.Caption = new TableTitle("none");
        }

        if (more > 0)
        {
            table.Caption = new TableTitle($"{Invariant(more)} more not listed");
        }

        return table;
    }

    private static Text Text(string text) => new(text);

    private static string Invariant<T>(T value)
        where T : IFormattable => value.ToString(null, CultureInfo.InvariantCulture);
}
