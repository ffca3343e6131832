using System.Diagnostics.Metrics;
using System.Text.RegularExpressions;
using FaaSTube.Channels;
using FaaSTube.Diagnostics;
using FaaSTube.Memory;
using FaaSTube.Tests.Support;
using FaaSTube.Transfers;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace FaaSTube.Tests.Diagnostics;

/// <summary>
/// The <c>FaaSTube</c> meter by the OpenTelemetry conventions: every instrument's name, unit, kind
/// and bucket advice, the inventory against docs/architecture.md's table, and the values and
/// attributes a known Put and Get on the simulated GPU record (collected with <see cref="MetricCollector{T}"/>).
/// </summary>
[TestClass]
public sealed partial class TelemetryInstrumentTests
{
    private static readonly string[] Expected =
    [
        "faastube.client.host_copy.io",
        "faastube.client.operation.duration",
        "faastube.node.active_requests",
        "faastube.node.active_sessions",
        "faastube.node.io",
        "faastube.node.request.duration",
        "faastube.pool.allocations",
        "faastube.pool.memory.usage",
        "faastube.pool.slab.count",
        "faastube.pool.spill.io",
        "faastube.pool.spill.operations",
        "faastube.pool.spill.usage",
        "faastube.transfer.active_transfers",
        "faastube.transfer.deadline_misses",
        "faastube.transfer.duration",
        "faastube.transfer.io",
    ];

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void Every_instrument_is_named_measured_and_advised_by_the_conventions()
    {
        var instruments = Published();
        CollectionAssert.AreEquivalent(Expected, instruments.Select(i => i.Name).ToList(), "the meter's instruments");
        foreach (var instrument in instruments)
        {
            string what = instrument.Name;
            Assert.IsTrue(Name().IsMatch(instrument.Name), $"{what}: lower snake case segments under faastube.");
            Assert.IsFalse(UnitWord().IsMatch(instrument.Name), $"{what}: no unit in the name (the unit is {instrument.Unit})");
            Assert.IsTrue(instrument.Unit is "By" or "s" || UcumAnnotation().IsMatch(instrument.Unit ?? ""), $"{what}: a UCUM unit, not '{instrument.Unit}'");
            Assert.IsFalse(string.IsNullOrWhiteSpace(instrument.Description), $"{what}: described");
            Assert.IsNotInstanceOfType<ObservableGauge<long>>(instrument, $"{what}: an additive value is an up-down counter");
            Assert.IsNotInstanceOfType<ObservableGauge<int>>(instrument, $"{what}: an additive value is an up-down counter");
            if (instrument is Histogram<double> histogram)
            {
                Assert.AreEqual("s", histogram.Unit, $"{what}: durations in seconds");
                Assert.EndsWith(".duration", histogram.Name, what);
                var buckets = histogram.Advice?.HistogramBucketBoundaries;
                Assert.IsNotNull(buckets, $"{what}: bucket advice");
                CollectionAssert.AreEqual(buckets.Order().ToList(), buckets.ToList(), $"{what}: ascending buckets");
                Assert.IsTrue(buckets[0] <= 0.0001 && buckets[^1] >= 10, $"{what}: buckets from sub-millisecond calls to 10 s");
            }

            if (instrument.Name.Contains(".active_", StringComparison.Ordinal) || instrument.Name.EndsWith(".usage", StringComparison.Ordinal) || instrument.Name.EndsWith(".count", StringComparison.Ordinal))
            {
                Assert.IsTrue(instrument is UpDownCounter<long> or ObservableUpDownCounter<long> or ObservableUpDownCounter<int>, $"{what}: a live count or usage is an up-down counter, not {instrument.GetType().Name}");
            }
        }

        Assert.AreEqual(Telemetry.Name, instruments[0].Meter.Name);
        Assert.IsFalse(string.IsNullOrEmpty(instruments[0].Meter.Version), "the meter carries the assembly's version");
        Assert.DoesNotContain('+', instruments[0].Meter.Version!, "without build metadata");
        Assert.AreEqual(instruments[0].Meter.Version, Telemetry.ActivitySource.Version, "the activity source is versioned alike");
    }

    [TestMethod]
    public void The_architecture_docs_list_every_instrument_with_its_unit()
    {
        string doc = File.ReadAllText(Path.Combine(Repository.Root, "docs", "architecture.md"));
        var rows = DocRow().Matches(doc).ToDictionary(m => m.Groups["name"].Value, m => m.Groups["unit"].Value);
        CollectionAssert.AreEquivalent(Expected, rows.Keys.ToList(), "docs/architecture.md's telemetry table");
        foreach (var instrument in Published())
        {
            Assert.AreEqual(instrument.Unit, rows[instrument.Name], $"{instrument.Name}'s unit in docs/architecture.md");
        }
    }

    [TestMethod]
    public async Task A_put_and_a_get_on_the_simulated_gpu_record_their_names_units_and_attributes()
    {
        var random = Seeds.Create(TestContext);
        string workflow = $"telemetry-{random.Next():x8}"; // the transfers' tenant: this test's own measurements among those of tests running alongside
        int length = (3 << 20) + random.Next(1, 4096);
        var data = random.Bytes(length);
        var meter = Telemetry.Meter(null);
        using var requestDuration = new MetricCollector<double>(meter, "faastube.node.request.duration");
        using var activeRequests = new MetricCollector<long>(meter, "faastube.node.active_requests");
        using var activeSessions = new MetricCollector<long>(meter, "faastube.node.active_sessions");
        using var nodeIo = new MetricCollector<long>(meter, "faastube.node.io");
        using var clientDuration = new MetricCollector<double>(meter, "faastube.client.operation.duration");
        using var hostCopy = new MetricCollector<long>(meter, "faastube.client.host_copy.io");
        using var transferIo = new MetricCollector<long>(meter, "faastube.transfer.io");
        using var transferDuration = new MetricCollector<double>(meter, "faastube.transfer.duration");
        using var activeTransfers = new MetricCollector<int>(meter, "faastube.transfer.active_transfers");
        using var usage = new MetricCollector<long>(meter, "faastube.pool.memory.usage");

        await using (var h = await NodeHarness.StartAsync())
        {
            var client = await h.ConnectAsync(inProcess: false, workflow: workflow, controlRingBytes: 0);
            var id = await client.PutAsync(data, new PutOptions { Consumers = 1 });
            var back = new byte[length];
            Assert.AreEqual((long)length, await client.GetAsync(id, back));
            CollectionAssert.AreEqual(data, back);
            var missing = await Assert.ThrowsAsync<TubeException>(async () => await client.WhereAsync(TubeId.NewId()));
            Assert.AreEqual(TubeError.NotFound, missing.Error);
            usage.RecordObservableInstruments();
            activeTransfers.RecordObservableInstruments();
        }

        // The node: a duration per request in seconds, by operation and path, error.type on a refusal.
        Assert.AreEqual("s", requestDuration.Instrument!.Unit);
        var requests = requestDuration.GetMeasurementSnapshot();
        foreach (var operation in new[] { "put_begin", "put_part", "put_commit", "get_whole", "get_to_host" }) // 3 MiB: over a slot, so the Get's GetWhole comes back leased and parts follow
        {
            var ours = requests.Where(m => m.ContainsTags(Tag(TelemetryTags.Operation, operation), Tag(TelemetryTags.Path, "host_staged"))).ToList();
            Assert.IsNotEmpty(ours, $"{operation} on the host path");
            Assert.IsTrue(ours.All(m => m.Value is > 0 and < 60), $"{operation}: seconds, not milliseconds");
            Assert.IsFalse(ours.Any(m => m.Tags.ContainsKey(TelemetryTags.ErrorType)), $"{operation} succeeded: no error.type");
        }

        Assert.IsTrue(requests.Any(m => m.MatchesTags(Tag(TelemetryTags.Operation, "where"), Tag(TelemetryTags.Path, "control"), Tag(TelemetryTags.ErrorType, "NotFound"))), "a refused request has error.type");
        Assert.IsTrue(activeRequests.GetMeasurementSnapshot().Any(m => m.Value == 1 && m.MatchesTags(Tag(TelemetryTags.Operation, "put_part"))), "a request counted in");
        Assert.IsTrue(activeRequests.GetMeasurementSnapshot().Any(m => m.Value == -1 && m.MatchesTags(Tag(TelemetryTags.Operation, "put_part"))), "and out");
        Assert.AreEqual("{session}", activeSessions.Instrument!.Unit);
        Assert.IsTrue(activeSessions.GetMeasurementSnapshot().Any(m => m.Value == 1) && activeSessions.GetMeasurementSnapshot().Any(m => m.Value == -1), "a session counted in and out");
        Assert.IsGreaterThanOrEqualTo((long)length, nodeIo.GetMeasurementSnapshot().Where(m => m.ContainsTags(Tag(TelemetryTags.NodeIoDirection, "receive"), Tag(TelemetryTags.Path, "host_staged"))).Sum(m => m.Value));
        Assert.IsGreaterThanOrEqualTo((long)length, nodeIo.GetMeasurementSnapshot().Where(m => m.ContainsTags(Tag(TelemetryTags.NodeIoDirection, "transmit"), Tag(TelemetryTags.Path, "host_staged"))).Sum(m => m.Value));

        // The client: its calls and its host copies.
        var calls = clientDuration.GetMeasurementSnapshot();
        Assert.IsTrue(calls.Any(m => m.MatchesTags(Tag(TelemetryTags.Operation, "put"), Tag(TelemetryTags.Path, "host_staged"))), "the client's put");
        Assert.IsTrue(calls.Any(m => m.MatchesTags(Tag(TelemetryTags.Operation, "get_to_memory"), Tag(TelemetryTags.Path, "host_staged"))), "the client's get");
        Assert.IsTrue(calls.Any(m => m.MatchesTags(Tag(TelemetryTags.Operation, "where"), Tag(TelemetryTags.Path, "control"), Tag(TelemetryTags.ErrorType, "NotFound"))), "the client's refused call");
        Assert.IsGreaterThanOrEqualTo((long)length, hostCopy.GetMeasurementSnapshot().Where(m => m.ContainsTags(Tag(TelemetryTags.HostCopyDirection, "to_window"))).Sum(m => m.Value));
        Assert.IsGreaterThanOrEqualTo((long)length, hostCopy.GetMeasurementSnapshot().Where(m => m.ContainsTags(Tag(TelemetryTags.HostCopyDirection, "from_window"))).Sum(m => m.Value));

        // The transfers: at least this workflow's bytes each way, on GPU 0; the workflow (a client's
        // name, unbounded) is never a metric's attribute, only the span's.
        var moved = transferIo.GetMeasurementSnapshot();
        Assert.IsGreaterThanOrEqualTo((long)length, moved.Where(m => m.MatchesTags(Tag(TelemetryTags.GpuIndex, 0), Tag(TelemetryTags.TransferDirection, "host_to_device"))).Sum(m => m.Value));
        Assert.IsGreaterThanOrEqualTo((long)length, moved.Where(m => m.MatchesTags(Tag(TelemetryTags.GpuIndex, 0), Tag(TelemetryTags.TransferDirection, "device_to_host"))).Sum(m => m.Value));
        Assert.IsFalse(moved.Any(m => m.Tags.ContainsKey(TelemetryTags.Tenant)), "no tenant attribute on a metric");
        Assert.IsFalse(transferDuration.GetMeasurementSnapshot().Any(m => m.Tags.ContainsKey(TelemetryTags.Tenant)), "nor on the durations");
        Assert.IsNotEmpty(transferDuration.GetMeasurementSnapshot(), "the transfers' durations");
        Assert.IsTrue(activeTransfers.GetMeasurementSnapshot().Any(m => m.ContainsTags(Tag(TelemetryTags.TransferDirection, "host_to_device"), Tag(TelemetryTags.GpuIndex, 0))), "the lanes' live counts");

        // The pool: one usage instrument, its states, tagged with the GPU.
        var states = usage.GetMeasurementSnapshot();
        Assert.IsTrue(states.Any(m => m.ContainsTags(Tag(TelemetryTags.MemoryState, "in_use"), Tag(TelemetryTags.GpuIndex, 0))), "memory in use");
        Assert.IsTrue(states.Any(m => m.ContainsTags(Tag(TelemetryTags.MemoryState, "free"), Tag(TelemetryTags.GpuIndex, 0))), "memory free");

        // Attribute names: the faastube namespace, or the conventions' error.type.
        var keys = new[] { requests.SelectMany(m => m.Tags.Keys), calls.SelectMany(m => m.Tags.Keys), moved.SelectMany(m => m.Tags.Keys), states.SelectMany(m => m.Tags.Keys) }.SelectMany(k => k).Distinct();
        foreach (var key in keys)
        {
            Assert.IsTrue(key == TelemetryTags.ErrorType || Name().IsMatch(key), $"attribute {key}");
        }
    }

    /// <summary>
    /// Components built at once on many threads share one set of instruments per meter: each
    /// instrument is published once (a racing second set would make an exporter see it twice).
    /// </summary>
    [TestMethod]
    public void Instruments_are_created_once_per_meter_however_many_components_race_to_build_them()
    {
        using var meter = new Meter($"{Telemetry.Name}.race-{Guid.NewGuid():N}");
        var published = new System.Collections.Concurrent.ConcurrentBag<string>();
        using var listener = new MeterListener { InstrumentPublished = (i, _) => { if (ReferenceEquals(i.Meter, meter)) { published.Add(i.Name); } } };
        listener.Start();
        using var go = new Barrier(16);
        var seen = new object[16][];
        Parallel.For(0, 16, new ParallelOptions { MaxDegreeOfParallelism = 16 }, i =>
        {
            go.SignalAndWait();
            seen[i] = [ChannelMetrics.Of(meter), PoolMetrics.Of(meter), TransferMetrics.Of(meter)];
        });

        Assert.IsTrue(seen.All(s => ReferenceEquals(s[0], seen[0][0]) && ReferenceEquals(s[1], seen[0][1]) && ReferenceEquals(s[2], seen[0][2])), "one instance of each per meter");
        CollectionAssert.AreEquivalent(Expected, published.ToList(), "each instrument published once");
    }

    private static KeyValuePair<string, object?> Tag(string name, object? value) => new(name, value);

    /// <summary>The instruments of the process-wide <c>FaaSTube</c> meter (each component's created first).</summary>
    private static List<Instrument> Published()
    {
        _ = ChannelMetrics.For(null);
        _ = PoolMetrics.For(null);
        _ = TransferMetrics.For(null);
        var meter = Telemetry.Meter(null);
        var found = new List<Instrument>();
        using var listener = new MeterListener { InstrumentPublished = (i, _) => { if (ReferenceEquals(i.Meter, meter)) { found.Add(i); } } };
        listener.Start();
        return found;
    }

    [GeneratedRegex(@"^faastube(\.[a-z][a-z0-9_]*)+$")]
    private static partial Regex Name();

    [GeneratedRegex(@"(bytes|_ms|millis|seconds|_sec\b|_by\b)", RegexOptions.IgnoreCase)]
    private static partial Regex UnitWord();

    [GeneratedRegex(@"^\{[a-z_]+\}$")]
    private static partial Regex UcumAnnotation();

    [GeneratedRegex(@"^\| `(?<name>faastube\.[a-z0-9_.]+)` \| [^|]+ \| `(?<unit>[^`]+)` \|", RegexOptions.Multiline)]
    private static partial Regex DocRow();
}
