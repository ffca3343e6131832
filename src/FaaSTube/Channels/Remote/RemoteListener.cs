using System.Net;
using System.Threading.Channels;
using FaaSTube.Native.Ucx;
using Microsoft.Extensions.Logging;

namespace FaaSTube.Channels.Remote;

/// <summary>
/// The node's network listener (<see cref="TubeNodeOptions.NetworkListen"/>): one UCX context; the
/// listener's worker only listens. Each connection request is rejected at once (ucp_listener_reject)
/// when <see cref="TubeNodeOptions.MaxRemoteHandshakes"/> handshakes are under way or
/// <see cref="TubeNodeOptions.MaxRemoteSessions"/> (or <see cref="TubeNodeOptions.MaxSessionsPerUser"/>)
/// authenticated sessions are open; otherwise it is accepted on a new worker of its own (one progress
/// thread, asleep when idle), which the <see cref="RemoteSession"/> destroys as it ends: the messages
/// its peer sent that nothing received go with it, and no other endpoint can reach its receives.
/// </summary>
internal sealed partial class RemoteListener
{
    private readonly IRemoteHost _host;
    private readonly UcxContext _context;
    private readonly UcxWorker _worker;
    private readonly object _sync = new();
    private UcxListener? _listener;
    private Task _acceptLoop = Task.CompletedTask;
    private int _handshakes;
    private int _authenticated;
    private int _workers;
    private long _dropped;
    private long _rejectedTickets;
    private readonly Dictionary<ulong, long> _usedTickets = [];

    /// <summary>Each workflow's remote connections (under <see cref="_sync"/>); a workflow with none has no entry.</summary>
    private readonly Dictionary<string, WorkflowCount> _byWorkflow = [];

    /// <summary>The most connect tickets remembered as used (three 30-second windows' worth of connects); past it, connects are rejected until old windows are pruned.</summary>
    private const int MaxUsedTickets = 1 << 16;

    /// <summary>The window the used tickets were last pruned in (under the set's lock).</summary>
    private long _usedPrunedAt = long.MinValue;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<UcxWorker, byte> _live = new();

    /// <summary>The sessions being served (their completions), for a stop that waits for them.</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Task, byte> _sessions = new();

    private RemoteListener(IRemoteHost host, UcxContext context, UcxWorker worker)
    {
        _host = host;
        _context = context;
        _worker = worker;
    }

    /// <summary>Where the node listens (the port chosen when 0 was asked).</summary>
    public IPEndPoint EndPoint => _listener?.LocalEndPoint ?? new IPEndPoint(IPAddress.None, 0);

    /// <summary>Connections in their handshake now.</summary>
    public int Handshakes => Volatile.Read(ref _handshakes);

    /// <summary>Authenticated remote sessions now.</summary>
    public int Authenticated => Volatile.Read(ref _authenticated);

    /// <summary>Session workers not yet destroyed.</summary>
    public int LiveWorkers => Volatile.Read(ref _workers);

    /// <summary>The session workers alive now.</summary>
    internal ICollection<UcxWorker> Workers => _live.Keys;

    /// <summary>Messages the sessions dropped because they did not come on the session's endpoint.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>A session dropped a message that came on another endpoint (or none).</summary>
    public void CountDropped() => Interlocked.Increment(ref _dropped);

    /// <summary>Connection requests rejected by the listener so far.</summary>
    public long Rejected { get; private set; }

    private int SessionLimit => Math.Min(_host.Settings.MaxRemoteSessions, _host.Settings.MaxSessionsPerUser);

    public static async Task<RemoteListener> StartAsync(IRemoteHost host, string listen, CancellationToken stop)
    {
        var at = await RemoteWire.ResolveAsync(listen, requireScheme: false, stop).ConfigureAwait(false);
        var context = UcxContext.CreateForActiveMessages(host.Settings.UcxSettings); // no tags: nothing a peer sends is queued unexpected
        var remote = new RemoteListener(host, context, UcxWorker.Create(context, "faastube-remote"));
        try
        {
            remote._listener = await UcxListener.ListenAsync(remote._worker, at).ConfigureAwait(false);
        }
        catch
        {
            remote.Dispose();
            throw;
        }

        remote._acceptLoop = Task.Run(() => remote.AcceptLoopAsync(stop), CancellationToken.None);
        return remote;
    }

    private async Task AcceptLoopAsync(CancellationToken stop)
    {
        while (true)
        {
            UcxConnectionRequest request;
            try
            {
                request = await _listener!.AcceptAsync(stop).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ChannelClosedException)
            {
                return;
            }

            if (TakeTicket(request.ClientId) is not { } workflow)
            {
                Interlocked.Increment(ref _rejectedTickets);
                request.Reject(); // no endpoint, no worker, no session: UCX keeps nothing of it
                continue;
            }

            bool admitted;
            lock (_sync)
            {
                var mine = _byWorkflow.GetValueOrDefault(workflow);
                admitted = _handshakes < _host.Settings.MaxRemoteHandshakes && _authenticated < SessionLimit && !stop.IsCancellationRequested
                    && mine.Handshakes < Math.Max(1, _host.Settings.MaxRemoteHandshakes / 4)
                    && mine.Handshakes + mine.Sessions < _host.Settings.MaxRemoteSessionsPerWorkflow;
                if (admitted)
                {
                    _handshakes++;
                    _byWorkflow[workflow] = mine with { Handshakes = mine.Handshakes + 1 };
                }
                else
                {
                    Rejected++;
                }
            }

            if (!admitted)
            {
                LogRejected(_host.Logger, request.Client?.ToString() ?? "?", Handshakes, Authenticated);
                request.Reject();
                continue;
            }

            UcxWorker? worker = null;
            try
            {
                worker = CreateSessionWorker();
                Interlocked.Increment(ref _workers);
                _live[worker] = 0;
                var served = await RemoteSession.StartAsync(_host, this, worker, request, workflow, stop).ConfigureAwait(false);
                _sessions[served] = 0;
                _ = served.ContinueWith(static (t, s) => ((RemoteListener)s!)._sessions.TryRemove(t, out _), this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
            catch (Exception e)
            {
                if (worker is not null)
                {
                    await DisposeWorkerAsync(worker).ConfigureAwait(false);
                }

                Ended(workflow, authenticated: false);
                _host.InternalError("accepting a remote connection", 0, e);
                try
                {
                    request.Reject(); // the client learns at once (rejected), instead of waiting for a challenge that never comes
                }
                catch (InvalidOperationException)
                {
                    // The session took it: its endpoint's failure tells the client.
                }
            }
        }
    }

    /// <summary>
    /// A session's worker. UCX opens a TCP interface on every network device as it makes a worker
    /// (unless NET_DEVICES says which); one that vanishes meanwhile (a container's or a test bed's
    /// veth taken down) fails it with UCS_ERR_NO_DEVICE: tried again, a few times, on the devices there are now.
    /// </summary>
    private UcxWorker CreateSessionWorker()
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                return UcxWorker.Create(_context, "faastube-remote-session");
            }
            catch (Native.UcxException e) when (e.Status == Native.UcsStatus.ErrNoDevice && attempt < 3)
            {
            }
        }
    }

    /// <summary>
    /// Whether <paramref name="ticket"/> is a connect ticket (<see cref="RemoteWire.Ticket"/>) of one
    /// of the node's workflows for this window or the one before, not used before: each is taken
    /// once. The used ones are remembered for two windows (only valid tickets are remembered: as
    /// many as clients that know a secret connect in a minute).
    /// </summary>
    private string? TakeTicket(ulong ticket)
    {
        if (ticket == 0 || _host.Settings.RemoteSecrets is not { Count: > 0 } secrets)
        {
            return null;
        }

        uint random = (uint)(ticket >> 32);
        long now = RemoteWire.TicketWindow(TimeProvider.System);
        string? workflow = null;
        foreach (var (name, secret) in secrets)
        {
            // The window before, this one and the next: a client clock a little behind or ahead is served.
            if (RemoteWire.Ticket(secret, random, now - 1) == ticket || RemoteWire.Ticket(secret, random, now) == ticket || RemoteWire.Ticket(secret, random, now + 1) == ticket)
            {
                workflow ??= name;
            }
        }

        if (workflow is null)
        {
            return null;
        }

        lock (_usedTickets)
        {
            if (_usedPrunedAt != now)
            {
                // Once per window, not per accept: tickets of windows no longer accepted cannot come back.
                foreach (var old in _usedTickets.Where(t => t.Value < now - 2).Select(t => t.Key).ToList())
                {
                    _usedTickets.Remove(old);
                }

                _usedPrunedAt = now;
            }

            // Bounded: past MaxUsedTickets remembered, new connects wait for the windows to move on.
            return _usedTickets.Count < MaxUsedTickets && _usedTickets.TryAdd(ticket, now) ? workflow : null;
        }
    }

    /// <summary>Connection requests rejected for want of a valid, unused connect ticket.</summary>
    public long RejectedTickets => Interlocked.Read(ref _rejectedTickets);

    /// <summary>A session's proof for <paramref name="workflow"/> (its ticket's) was right: it counts as an authenticated remote session, if one is left (false: refuse it).</summary>
    public bool TryAuthenticate(string workflow)
    {
        lock (_sync)
        {
            if (_authenticated >= SessionLimit)
            {
                return false;
            }

            _authenticated++;
            _handshakes--;
            var mine = _byWorkflow.GetValueOrDefault(workflow);
            _byWorkflow[workflow] = mine with { Handshakes = Math.Max(0, mine.Handshakes - 1), Sessions = mine.Sessions + 1 };
            return true;
        }
    }

    /// <summary>A session (or an accept that failed) of <paramref name="workflow"/> ended.</summary>
    public void Ended(string workflow, bool authenticated)
    {
        lock (_sync)
        {
            var mine = _byWorkflow.GetValueOrDefault(workflow);
            if (authenticated)
            {
                _authenticated--;
                mine = mine with { Sessions = Math.Max(0, mine.Sessions - 1) };
            }
            else
            {
                _handshakes--;
                mine = mine with { Handshakes = Math.Max(0, mine.Handshakes - 1) };
            }

            if (mine.Handshakes == 0 && mine.Sessions == 0)
            {
                _byWorkflow.Remove(workflow);
            }
            else
            {
                _byWorkflow[workflow] = mine;
            }
        }
    }

    /// <summary>The remote connections a workflow has now (in their handshake, authenticated), for its limit.</summary>
    private readonly record struct WorkflowCount(int Handshakes, int Sessions);

    /// <summary>Destroys a session's worker (off the caller's thread; bounded: the worker gives UCX 2 s, then abandons what is pending).</summary>
    public async Task DisposeWorkerAsync(UcxWorker worker)
    {
        await Task.Run(worker.Dispose).ConfigureAwait(false);
        _live.TryRemove(worker, out _);
        Interlocked.Decrement(ref _workers);
    }

    /// <summary>Completes when every session served so far has ended, or after <paramref name="patience"/>; true when they all ended.</summary>
    public async Task<bool> WhenNoSessionsAsync(TimeSpan patience)
    {
        await Task.WhenAll(_sessions.Keys).WaitAsync(patience).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing); // a timeout too: the answer says
        return _sessions.Keys.All(t => t.IsCompleted);
    }

    /// <summary>Stops accepting (the node then ends every session).</summary>
    public async Task StopAcceptingAsync()
    {
        if (_listener is { } listener)
        {
            await listener.CloseAsync().ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        await _acceptLoop.ConfigureAwait(false);
    }

    /// <summary>After every session ended (and destroyed its worker): the listener's worker and the context.</summary>
    public void Dispose()
    {
        _worker.Dispose();
        _context.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Remote connection from {Peer} rejected: {Handshakes} handshakes under way, {Sessions} remote sessions open")]
    private static partial void LogRejected(ILogger logger, string peer, int handshakes, int sessions);
}
