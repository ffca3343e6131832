using FaaSTube.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace FaaSTube.Hosting;

/// <summary>
/// The node as a hosted service (<see cref="FaaSTubeServiceCollectionExtensions.AddFaaSTubeNode"/>):
/// <see cref="StartAsync"/> starts it with the container's services and the validated options,
/// <see cref="StopAsync"/> stops it gracefully (calls in flight finish until the host's shutdown
/// timeout). Building this service opens nothing: no GPU, socket, file, timer or thread.
/// </summary>
public sealed class TubeNodeHostedService : IHostedService, IAsyncDisposable
{
    private readonly IOptions<TubeNodeOptions> _options;
    private readonly FaaSTubeServices _services;
    private TubeNode? _node;
    private int _starting; // 1 from a start's beginning to the stop: two starts cannot both open a node

    internal TubeNodeHostedService(IOptions<TubeNodeOptions> options, FaaSTubeServices services)
    {
        _options = options;
        _services = services;
    }

    /// <summary>The running node (for in-process clients and statistics).</summary>
    /// <exception cref="InvalidOperationException">The host has not started it yet, or it has stopped.</exception>
    public TubeNode Node => Volatile.Read(ref _node) ?? throw new InvalidOperationException("The FaaSTube node is not running: it starts with the host.");

    /// <summary>Starts the node: opens the GPUs and listens on its socket.</summary>
    /// <param name="cancellationToken">Cancels the start.</param>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _starting, 1) != 0)
        {
            throw new InvalidOperationException("The FaaSTube node is already running or starting.");
        }

        try
        {
            _node = await TubeNode.StartAsync(_options.Value, _services, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Volatile.Write(ref _starting, 0); // a failed start may be retried
            throw;
        }
    }

    /// <summary>Stops the node gracefully: no new connections, calls in flight finish (until <paramref name="cancellationToken"/> fires), then every client is disconnected and the GPUs freed.</summary>
    /// <param name="cancellationToken">The host's shutdown timeout.</param>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _node, null) is { } node)
        {
            await node.StopAsync(cancellationToken).ConfigureAwait(false);
            Volatile.Write(ref _starting, 0);
        }
    }

    /// <summary>Disposes the node if the host did not stop it.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _node, null) is { } node)
        {
            await node.DisposeAsync().ConfigureAwait(false);
        }
    }
}
