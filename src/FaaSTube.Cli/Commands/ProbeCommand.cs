using System.CommandLine;
using System.Globalization;
using FaaSTube.Cli.Views;
using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Diagnostics;
using FaaSTube.Topology;
using Spectre.Console;

namespace FaaSTube.Cli.Commands;

/// <summary>
/// <c>faastube probe</c>: the devices, their topology as <c>nvidia-smi topo -m</c> shows it, and the copy
/// bandwidth table (<see cref="BandwidthProbe"/>, which the probe sample prints too), with a progress
/// display while it measures.
/// </summary>
internal static class ProbeCommand
{
    public static Command Create(IAnsiConsole console, TextWriter error)
    {
        var backend = new Option<GpuBackend>("--backend") { Description = "auto, cuda or simulated.", DefaultValueFactory = _ => GpuBackend.Auto };
        var topology = new Option<string>("--topology") { Description = "The simulated GPUs' topology: h100, dgx1 or dgx-a100.", DefaultValueFactory = _ => "h100" };
        topology.AcceptOnlyFromAmong("h100", "dgx1", "dgx-a100");
        var sizes = new Option<double[]>("--sizes") { Description = "Copy sizes in MiB.", DefaultValueFactory = _ => [1, 16, 64, 256], AllowMultipleArgumentsPerToken = true };
        CommonOptions.Require(sizes, v => v.Length > 0 && v.All(s => s > 0 && s < 2048), _ => "--sizes must be one or more sizes between 0 and 2048 MiB.");
        var iterations = new Option<int>("--iterations") { Description = "Runs per figure (the median is shown).", DefaultValueFactory = _ => 5 };
        CommonOptions.Require(iterations, v => v is >= 1 and <= 1000, _ => "--iterations must be between 1 and 1000.");
        var model = new Option<bool>("--model") { Description = "Simulated GPU only: report the link model's bandwidth under a virtual clock instead of this machine's memcpy speed." };
        var command = new Command("probe", "Show the GPUs, their topology matrix (as nvidia-smi topo -m) and the copy bandwidth table.")
        {
            backend, topology, sizes, iterations, model,
        };
        command.SetAction(async (parsed, cancellationToken) =>
        {
            var clock = parsed.GetValue(model) ? new VirtualClock() : null;
            using var gpus = GpuSystem.Open(new GpuSystemOptions
            {
                Backend = parsed.GetValue(backend),
                SimulatedTopology = GpuTopology.FromName(parsed.GetValue(topology)!),
                SimulatedClock = clock,
            });
            Devices(console, gpus);
            Matrix(console, gpus.Topology);
            var probe = new BandwidthProbe(parsed.GetValue(iterations), clock);
            var bytes = parsed.GetValue(sizes)!.Select(s => (long)(s * (1 << 20))).ToArray();
            CopyBandwidthReport? report = null;
            await console.Progress().AutoClear(true).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new SpinnerColumn())
                .StartAsync(async progress =>
                {
                    var task = progress.AddTask("measuring", maxValue: 1);
                    report = await probe.MeasureAsync(gpus, bytes, new Step(step =>
                    {
                        task.MaxValue = step.Total;
                        task.Value = step.Done;
                        task.Description = Markup.Escape(step.Description);
                    }), cancellationToken).ConfigureAwait(false);
                }).ConfigureAwait(false);
            Bandwidth(console, report!);
            if (!report!.ChecksumMatches)
            {
                await error.WriteLineAsync($"faastube: the GPU's checksum of copied data ({report.GpuChecksum:x16}) does not match the host's.").ConfigureAwait(false);
                return CliApp.Failed;
            }

            return 0;
        });
        return command;
    }

    private static void Devices(IAnsiConsole console, GpuSystem gpus)
    {
        console.MarkupLineInterpolated($"[bold]FaaSTube probe[/]: {gpus.Backend} backend, {gpus.SelectionReason}");
        var table = new Table { Title = new TableTitle("Devices"), Border = TableBorder.Rounded };
        table.AddColumns("GPU", "name", "memory", "free", "PCI bus");
        foreach (var d in gpus.Devices)
        {
            var memory = d.GetMemoryInfo();
            table.AddRow(d.Ordinal.ToString(CultureInfo.InvariantCulture), Markup.Escape(d.Name), Sizes.Bytes(memory.Total), Sizes.Bytes(memory.Free), Markup.Escape(d.PciBusId));
        }

        console.Write(table);
    }

    private static void Matrix(IAnsiConsole console, GpuTopology t)
    {
        var table = new Table { Title = new TableTitle($"Topology {Markup.Escape(t.Name)} (nvidia-smi topo -m)"), Border = TableBorder.Rounded };
        table.AddColumn("");
        for (int b = 0; b < t.GpuCount; b++)
        {
            table.AddColumn(new TableColumn($"GPU{b}").Centered());
        }

        table.AddColumn("NUMA affinity");
        for (int a = 0; a < t.GpuCount; a++)
        {
            var row = new List<string> { $"GPU{a}" };
            row.AddRange(Enumerable.Range(0, t.GpuCount).Select(b => TopologyMatrix.Cell(t, a, b)));
            row.Add(t.NumaNode(a).ToString(CultureInfo.InvariantCulture));
            table.AddRow(row.ToArray());
        }

        table.Caption = new TableTitle(string.Join("; ", TopologyMatrix.Legend.Select(l => $"{l.Cell} = {l.Meaning}"))
            + string.Create(CultureInfo.InvariantCulture, $". Host link {t.HostBytesPerSecond / 1e9:F0} GB/s per GPU per direction, device memory {t.DeviceMemoryBytesPerSecond / 1e9:F0} GB/s."));
        console.Write(table);
    }

    private static void Bandwidth(IAnsiConsole console, CopyBandwidthReport report)
    {
        var table = new Table
        {
            Title = new TableTitle($"Copy bandwidth on GPU 0, GB/s, median of {report.Iterations}{(report.Modelled ? " (link model, virtual clock)" : "")}"),
            Border = TableBorder.Rounded,
        };
        table.AddColumns("size", "H2D pinned", "H2D pageable", "D2H pinned", "D2H pageable", "D2D");
        foreach (var r in report.Rows)
        {
            table.AddRow(Sizes.Bytes(r.Bytes), F(r.HostToDevicePinned), F(r.HostToDevicePageable), F(r.DeviceToHostPinned), F(r.DeviceToHostPageable), F(r.DeviceToDevice));
        }

        table.Caption = new TableTitle($"data check: the GPU's checksum {(report.ChecksumMatches ? "matches" : "DOES NOT MATCH")} the host's ({report.GpuChecksum:x16})");
        console.Write(table);

        int n = report.PeerGigabytesPerSecond.Count;
        if (n == 0)
        {
            return;
        }

        var peers = new Table { Title = new TableTitle($"GPU to GPU bandwidth, GB/s, {Sizes.Bytes(report.PeerBytes)} per copy (row: source, column: destination)"), Border = TableBorder.Rounded };
        peers.AddColumn("");
        for (int b = 0; b < n; b++)
        {
            peers.AddColumn(new TableColumn($"GPU{b}").RightAligned());
        }

        for (int a = 0; a < n; a++)
        {
            var row = new List<string> { $"GPU{a}" };
            row.AddRange(Enumerable.Range(0, n).Select(b => a == b ? "-" : F(report.PeerGigabytesPerSecond[a][b])));
            peers.AddRow(row.ToArray());
        }

        console.Write(peers);
    }

    private static string F(double gigabytesPerSecond) => gigabytesPerSecond.ToString("F1", CultureInfo.InvariantCulture);

    /// <summary>An <see cref="IProgress{T}"/> that reports in place (on the measuring thread), so the display is current when the report is done.</summary>
    private sealed class Step(Action<ProbeStep> report) : IProgress<ProbeStep>
    {
        public void Report(ProbeStep value) => report(value);
    }
}
