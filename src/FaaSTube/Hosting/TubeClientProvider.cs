using FaaSTube.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FaaSTube.Hosting;

/// <summary>
/// The container's <see cref="ITubeClientProvider"/>: connects lazily (building it opens nothing),
/// one connection attempt at a time, and replaces a client whose node went away on the next call.
/// </summary>
internal sealed partial class TubeClientProvider : ITubeClientProvider, IAsyncDisposable
{
    private readonly IOptions<TubeClientOptions> _options;
    private readonly ILogger _logger;
    private readonly FaaSTubeServices _services;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private TubeClient? _client;
    private bool _disposed;

    public TubeClientProvider(IOptions<TubeClientOptions> options, FaaSTubeServices services)
    {
        _options = options;
        _services = services;
        _logger = services.Logger<TubeClientProvider>();
    }

    public ValueTask<TubeClient> GetClientAsync(CancellationToken cancellationToken = default) =>
        Volatile.Read(ref _client) is { IsConnected: true } client
            ? ValueTask.FromResult(client)
            : new ValueTask<TubeClient>(ConnectAsync(cancellationToken));

    private async Task<TubeClient> ConnectAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_client is { IsConnected: true } current)
            {
                return current; // another caller connected meanwhile
            }

            if (Interlocked.Exchange(ref _client, null) is { } lost)
            {
                LogLost(_logger, lost.SessionId);
                await lost.DisposeAsync().ConfigureAwait(false);
            }

            var options = _options.Value;
            try
            {
                var client = await TubeClient.ConnectAsync(options, _services, cancellationToken).ConfigureAwait(false);
                LogConnected(_logger, options.SocketPath, client.SessionId);
                Volatile.Write(ref _client, client);
                return client;
            }
            catch (TubeNodeUnavailableException e)
            {
                LogUnavailable(_logger, options.SocketPath, e.Message);
                throw;
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            _disposed = true;
            if (Interlocked.Exchange(ref _client, null) is { } client)
            {
                await client.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Connected to the FaaSTube node on {SocketPath} (session {Session})")]
    private static partial void LogConnected(ILogger logger, string socketPath, long session);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "The FaaSTube node of session {Session} went away; reconnecting")]
    private static partial void LogLost(ILogger logger, long session);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "No FaaSTube node on {SocketPath}: {Reason}")]
    private static partial void LogUnavailable(ILogger logger, string socketPath, string reason);
}
