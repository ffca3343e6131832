using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace FaaSTube.Bench;

/// <summary>
/// The config every benchmark shares (model: dotnet/performance RecommendedConfig): memory
/// diagnoser, GitHub Markdown, a throughput column. Flags of ours, taken out before
/// BenchmarkDotNet sees the rest:
///   --inprocess  run in this process (the CUDA machine has a runtime but no SDK to build jobs);
///   --quick      a short job (CI-size smoke runs).
/// </summary>
internal static class BenchConfig
{
    public static (IConfig Config, string[] Remaining) Create(string[] args)
    {
        bool inProcess = args.Contains("--inprocess");
        bool quick = args.Contains("--quick");
        var rest = args.Where(a => a is not ("--inprocess" or "--quick")).ToArray();

        var job = quick
            ? Job.Default.WithWarmupCount(1).WithIterationCount(3).WithLaunchCount(1).WithInvocationCount(1).WithUnrollFactor(1)
            : Job.Default.WithWarmupCount(2).WithMinIterationCount(5).WithMaxIterationCount(20);
        if (inProcess)
        {
            job = job.WithToolchain(InProcessEmitToolchain.Instance);
        }

        var config = DefaultConfig.Instance
            .AddJob(job.AsDefault())
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumn(new ThroughputColumn())
            .WithSummaryStyle(SummaryStyle.Default.WithMaxParameterColumnWidth(30))
            .WithOptions(ConfigOptions.JoinSummary | ConfigOptions.DisableLogFile);
        return (config, rest);
    }
}

/// <summary>Marks benchmarks that move their <c>Bytes</c> parameter once per operation, so a GB/s column makes sense.</summary>
[AttributeUsage(AttributeTargets.Class)]
internal sealed class MovesBytesAttribute : Attribute
{
}

/// <summary>GB/s (10^9 bytes per second) from a benchmark's <c>Bytes</c> parameter and its mean time (classes marked <see cref="MovesBytesAttribute"/>).</summary>
internal sealed class ThroughputColumn : IColumn
{
    public string Id => "GBps";
    public string ColumnName => "GB/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "Bytes moved per second, 10^9";

    public string GetValue(Summary summary, BenchmarkDotNet.Running.BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkDotNet.Running.BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var bytes = benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == "Bytes")?.Value;
        var report = summary[benchmarkCase];
        if (bytes is null || report?.ResultStatistics is null || !benchmarkCase.Descriptor.Type.IsDefined(typeof(MovesBytesAttribute), false))
        {
            return "-";
        }

        double seconds = report.ResultStatistics.Mean / 1e9;
        return (Convert.ToDouble(bytes, System.Globalization.CultureInfo.InvariantCulture) / seconds / 1e9).ToString("F1", System.Globalization.CultureInfo.InvariantCulture);
    }

    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkDotNet.Running.BenchmarkCase benchmarkCase) => false;
}
