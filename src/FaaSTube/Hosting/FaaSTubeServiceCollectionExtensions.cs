using System.Diagnostics.Metrics;
using FaaSTube.Channels;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FaaSTube.Hosting;

/// <summary>
/// Adds FaaSTube to a host: the node as a hosted service (<see cref="AddFaaSTubeNode"/>), and for
/// function code a client that connects when first used (<see cref="AddFaaSTubeClient"/>). Options
/// bind from the <c>FaaSTube</c> configuration section and are validated when the host starts;
/// logging, metrics and the clock come from the container (<see cref="ILoggerFactory"/>,
/// <see cref="IMeterFactory"/>, <see cref="TimeProvider"/>) and reach every part of the node.
/// </summary>
public static class FaaSTubeServiceCollectionExtensions
{
    /// <summary>The configuration section of the node's options (<see cref="TubeNodeOptions"/>): <c>FaaSTube:Node</c>.</summary>
    public const string NodeSection = "FaaSTube:Node";

    /// <summary>The configuration section of the client's options (<see cref="TubeClientOptions"/>): <c>FaaSTube:Client</c>.</summary>
    public const string ClientSection = "FaaSTube:Client";

    /// <summary>
    /// Runs a FaaSTube node as a hosted service: it starts with the host (options validated first:
    /// an invalid one fails the start with its name, e.g. <c>FaaSTube:Node:MaxFrameBytes</c>) and stops
    /// with it gracefully, letting calls in flight finish within the host's shutdown timeout
    /// (<see cref="TubeNode.StopAsync"/>). Options bind from <see cref="NodeSection"/>, then
    /// <paramref name="configure"/> runs; the node takes a copy when it starts, so later changes have no effect.
    /// Resolve <see cref="TubeNodeHostedService"/> to reach the running node.
    /// </summary>
    /// <param name="services">The container.</param>
    /// <param name="configure">Changes to the bound options (optional).</param>
    /// <returns><paramref name="services"/>.</returns>
    public static IServiceCollection AddFaaSTubeNode(this IServiceCollection services, Action<TubeNodeOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        // Code-only settings (delegates, the simulated clock, a topology object) are not bound; the GPUs are bound by hand (BindGpus).
#pragma warning disable SYSLIB1100, SYSLIB1101
        var options = services.AddOptions<TubeNodeOptions>().BindConfiguration(NodeSection);
#pragma warning restore SYSLIB1100, SYSLIB1101
        options.Configure<IConfiguration>((o, configuration) => BindGpus(configuration.GetSection($"{NodeSection}:Gpus"), o.Gpus));
        if (configure is not null)
        {
            options.Configure(configure);
        }

        options.ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<TubeNodeOptions>, TubeNodeOptionsValidator>());
        AddShared(services);
        services.TryAddSingleton(sp => new TubeNodeHostedService(sp.GetRequiredService<IOptions<TubeNodeOptions>>(), sp.GetRequiredService<FaaSTubeServices>()));
        services.AddHostedService(sp => sp.GetRequiredService<TubeNodeHostedService>());
        return services;
    }

    /// <summary>
    /// Gives function code an <see cref="ITubeClientProvider"/>: a client of the machine's node that
    /// connects on first use (nothing is opened when the container builds it), reconnects once the node
    /// is back after it went away, and while no node is there fails each call with
    /// <see cref="TubeNodeUnavailableException"/> (<see cref="FaaSTubeErrorCode.NodeUnavailable"/>).
    /// Options bind from <see cref="ClientSection"/>, then <paramref name="configure"/> runs; they are
    /// validated when the host starts (e.g. <c>FaaSTube:Client:WindowBytes</c> under 8 KiB fails it).
    /// </summary>
    /// <param name="services">The container.</param>
    /// <param name="configure">Changes to the bound options (optional).</param>
    /// <returns><paramref name="services"/>.</returns>
    public static IServiceCollection AddFaaSTubeClient(this IServiceCollection services, Action<TubeClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
#pragma warning disable SYSLIB1100, SYSLIB1101
        var options = services.AddOptions<TubeClientOptions>().BindConfiguration(ClientSection);
#pragma warning restore SYSLIB1100, SYSLIB1101
        options.Configure<IConfiguration>((o, configuration) => BindGpus(configuration.GetSection($"{ClientSection}:Gpus"), o.Gpus));
        if (configure is not null)
        {
            options.Configure(configure);
        }

        options.ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<TubeClientOptions>, TubeClientOptionsValidator>());
        AddShared(services);
        services.TryAddSingleton<ITubeClientProvider>(sp => new TubeClientProvider(sp.GetRequiredService<IOptions<TubeClientOptions>>(), sp.GetRequiredService<FaaSTubeServices>()));
        return services;
    }

    /// <summary>
    /// The GPUs' settings from <c>...:Gpus</c>: <c>Backend</c>, <c>SimulatedTopology</c> (a preset's name:
    /// <see cref="Topology.GpuTopology.FromName"/>), <c>SimulatedMemoryBytes</c>, <c>SimulatedMemoryDirectory</c>,
    /// <c>SimulatedRealTime</c>, <c>CopyChunkBytes</c>. A value that does not parse fails with its path.
    /// </summary>
    private static void BindGpus(IConfigurationSection section, Devices.GpuSystemOptions gpus)
    {
        if (section[nameof(gpus.Backend)] is { } backend)
        {
            gpus.Backend = Enum.TryParse<Devices.GpuBackend>(backend, ignoreCase: true, out var parsed)
                ? parsed
                : throw new InvalidOperationException($"{section.Path}:{nameof(gpus.Backend)}: '{backend}' is not one of {string.Join(", ", Enum.GetNames<Devices.GpuBackend>())}.");
        }

        if (section[nameof(gpus.SimulatedTopology)] is { } topology)
        {
            gpus.SimulatedTopology = Topology.GpuTopology.FromName(topology);
        }

        gpus.SimulatedMemoryBytes = Number(section, nameof(gpus.SimulatedMemoryBytes)) ?? gpus.SimulatedMemoryBytes;
        gpus.CopyChunkBytes = Number(section, nameof(gpus.CopyChunkBytes)) ?? gpus.CopyChunkBytes;
        gpus.SimulatedMemoryDirectory = section[nameof(gpus.SimulatedMemoryDirectory)] ?? gpus.SimulatedMemoryDirectory;
        if (section[nameof(gpus.SimulatedRealTime)] is { } realTime)
        {
            gpus.SimulatedRealTime = bool.TryParse(realTime, out bool value)
                ? value
                : throw new InvalidOperationException($"{section.Path}:{nameof(gpus.SimulatedRealTime)}: '{realTime}' is not true or false.");
        }
    }

    private static long? Number(IConfigurationSection section, string key) =>
        section[key] is not { } text ? null
        : long.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out long value) ? value
        : throw new InvalidOperationException($"{section.Path}:{key}: '{text}' is not a whole number.");

    /// <summary>The one composition root: the container's logger factory, meter factory and clock, for every FaaSTube part.</summary>
    private static void AddShared(IServiceCollection services) =>
        services.TryAddSingleton(sp => FaaSTubeServices.From(
            sp.GetService<ILoggerFactory>(),
            sp.GetService<IMeterFactory>(),
            sp.GetService<TimeProvider>()));
}
