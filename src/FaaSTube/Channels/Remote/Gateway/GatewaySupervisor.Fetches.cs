using System.Collections.Concurrent;
using System.Diagnostics;
using FaaSTube.Channels.Peers;
using Microsoft.Extensions.Logging;

namespace FaaSTube.Channels.Remote.Gateway;

/// <summary>
/// The node's fetches from its peers, run by the gateway (<see cref="GatewayFetchLines"/>): each asked
/// on the gateway's input and answered on its output. A fetch waits for its answer, its caller's
/// cancellation, or the gateway's exit (which fails every fetch it was running). An answer that comes
/// after its caller gave up is still taken: a copy it put here is handed to <c>orphaned</c> (dropped).
/// </summary>
internal sealed partial class GatewaySupervisor
{
    private readonly ConcurrentDictionary<long, PendingFetch> _fetches = new();
    private readonly SemaphoreSlim _input = new(1, 1);

    private sealed record PendingFetch(int Gateway, TaskCompletionSource<PeerFetched> Answer, Action<PeerFetched> Orphaned);

    /// <summary>Asks the running gateway for <paramref name="fetch"/> and waits for its answer.</summary>
    /// <exception cref="IOException">No gateway runs now (it restarts), or it exited during the fetch.</exception>
    public async Task<PeerFetched> FetchAsync(PeerFetch fetch, Action<PeerFetched> orphaned, CancellationToken cancellationToken)
    {
        Process process;
        lock (_sync)
        {
            process = _process is { HasExited: false } p ? p : throw new IOException("The network gateway is not running (it is being started again).");
        }

        var pending = new PendingFetch(process.Id, new TaskCompletionSource<PeerFetched>(TaskCreationOptions.RunContinuationsAsynchronously), orphaned);
        if (!_fetches.TryAdd(fetch.Request, pending))
        {
            throw new InvalidOperationException($"Fetch {fetch.Request} is asked twice.");
        }

        try
        {
            if (process.HasExited)
            {
                throw new IOException("it exited"); // after the entry was added: its exit's sweep may have run before
            }

            await _input.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await process.StandardInput.WriteLineAsync(GatewayFetchLines.Ask(fetch).AsMemory(), cancellationToken).ConfigureAwait(false);
                await process.StandardInput.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _input.Release();
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException)
        {
            _fetches.TryRemove(fetch.Request, out _);
            throw e is OperationCanceledException ? e : new IOException($"The network gateway did not take the fetch: {e.Message}", e);
        }

        try
        {
            return await pending.Answer.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            if (!pending.Answer.TrySetCanceled() && pending.Answer.Task.IsCompletedSuccessfully)
            {
                orphaned(pending.Answer.Task.Result); // answered as the caller gave up: nobody takes the copy
            }

            throw;
        }
    }

    /// <summary>One line of the gateway's output: a fetch's answer is delivered (a malformed one or one nobody asked for is logged and dropped); any other line is its log.</summary>
    private void Heard(string line)
    {
        if (!line.StartsWith(GatewayFetchLines.Fetched, StringComparison.Ordinal))
        {
            Said(line);
            return;
        }

        try
        {
            var (request, fetched, refused) = GatewayFetchLines.ReadAnswer(line);
            if (!_fetches.TryRemove(request, out var pending))
            {
                LogUnasked(_logger, request);
                return;
            }

            if (fetched is not null && !pending.Answer.TrySetResult(fetched))
            {
                pending.Orphaned(fetched);
            }
            else if (refused is not null)
            {
                pending.Answer.TrySetException(refused);
            }
        }
        catch (Exception e) when (e is InvalidDataException or System.Text.Json.JsonException or FormatException)
        {
            LogBadAnswer(_logger, e.Message);
        }
    }

    /// <summary>The gateway <paramref name="pid"/> is gone: every fetch it was running fails.</summary>
    private void FailFetchesOf(int pid)
    {
        foreach (var (request, pending) in _fetches)
        {
            if (pending.Gateway == pid && _fetches.TryRemove(request, out _))
            {
                pending.Answer.TrySetException(new IOException("The network gateway exited during the fetch."));
            }
        }
    }

    /// <summary>The gateway's output, line by line (each cut at <see cref="MaxLogLine"/>; a fetch answer over <see cref="GatewayFetchLines.MaxLine"/> is refused), until it ends (the gateway exited).</summary>
    private async Task HearAsync(BoundedLineReader output, int pid)
    {
        try
        {
            while (await output.ReadLineAsync().ConfigureAwait(false) is { } line)
            {
                Heard(line);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
        }
        finally
        {
            FailFetchesOf(pid);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Network gateway answered fetch {Request}, which the node did not ask for (or has been answered); dropped")]
    private static partial void LogUnasked(ILogger logger, long request);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Network gateway: a fetch answer the node cannot read ({Reason}); dropped")]
    private static partial void LogBadAnswer(ILogger logger, string reason);
}

/// <summary>The node's side of fetches in the gateway (<see cref="NetworkIsolation.Process"/>): a copy that arrives after its Get gave up is dropped.</summary>
internal sealed class GatewayPeerTransport(GatewaySupervisor gateway, TubeNode node) : IPeerTransport
{
    public ValueTask DisposeAsync() => ValueTask.CompletedTask; // the gateway's links close with it
    public Task<PeerFetched> FetchAsync(PeerFetch fetch, CancellationToken cancellationToken) =>
        gateway.FetchAsync(fetch, late => Drop(fetch.Workflow, late), cancellationToken);

    private void Drop(string workflow, PeerFetched late)
    {
        if (late.Version == 0 && node.Directory.TryFind(workflow, late.Local) is { } orphan && PeerFetcher.IsFetchedCopy(orphan, late.Length))
        {
            node.Directory.Remove(orphan);
        }
    }
}
