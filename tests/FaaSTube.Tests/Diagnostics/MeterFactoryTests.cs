using System.Reflection;
using System.Diagnostics.Metrics;
using FaaSTube.Channels;
using FaaSTube.Memory;
using FaaSTube.Transfers;

namespace FaaSTube.Tests.Diagnostics;

/// <summary>
/// The <c>FaaSTube</c> meter comes from the host's <see cref="IMeterFactory"/> with the name and the
/// assembly's version, its instruments once per meter; without a factory, one process-wide meter.
/// </summary>
[TestClass]
public sealed class MeterFactoryTests
{
    [TestMethod]
    public void The_meter_is_made_by_the_hosts_factory_with_the_name_and_version_and_its_instruments_once()
    {
        using var factory = new RecordingMeterFactory();
        var meter = Telemetry.Meter(factory);

        var options = factory.Created.Single();
        Assert.AreEqual(Telemetry.Name, options.Name);
        Assert.AreEqual(Telemetry.Version, options.Version);
        string informational = typeof(Telemetry).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;
        Assert.AreEqual(informational.Split('+')[0], options.Version, "the assembly's informational version, without build metadata");
        Assert.AreSame(meter, Telemetry.Meter(factory), "the factory hands every caller the same meter");

        var channel = ChannelMetrics.For(factory);
        Assert.AreSame(channel, ChannelMetrics.For(factory), "one set of instruments per meter");
        Assert.AreSame(meter, channel.RequestDuration.Meter);
        Assert.AreSame(meter, PoolMetrics.For(factory).Allocations.Meter);
        Assert.AreSame(meter, TransferMetrics.For(factory).Io.Meter);
        Assert.AreNotSame(channel, ChannelMetrics.For(null), "the process-wide meter has its own");
        Assert.AreSame(Telemetry.Meter(null), Telemetry.Meter(null));
        Assert.AreEqual(Telemetry.Version, Telemetry.Meter(null).Version);
    }

    /// <summary>Caches by name and version as the runtime's factory does, and disposes its meters with itself.</summary>
    private sealed class RecordingMeterFactory : IMeterFactory
    {
        private readonly Dictionary<(string, string?), Meter> _meters = [];

        public List<MeterOptions> Created { get; } = [];

        public Meter Create(MeterOptions options)
        {
            if (!_meters.TryGetValue((options.Name, options.Version), out var meter))
            {
                Created.Add(options);
                meter = new Meter(new MeterOptions(options.Name) { Version = options.Version, Scope = this });
                _meters[(options.Name, options.Version)] = meter;
            }

            return meter;
        }

        public void Dispose()
        {
            foreach (var meter in _meters.Values)
            {
                meter.Dispose();
            }
        }
    }
}
