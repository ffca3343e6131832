using System.Net;
using System.Threading.Channels;
using FaaSTube.Native.Ucx;

namespace FaaSTube.Channels.Remote;

/// <summary>
/// The node's network listener (<see cref="TubeNodeOptions.NetworkListen"/>): one UCX context and
/// worker (one progress thread, asleep on its event descriptor when idle) for the listener and every
/// remote session; each accepted endpoint becomes a <see cref="RemoteSession"/>.
/// </summary>
internal sealed class RemoteListener
{
    private readonly TubeNode _node;
    private readonly UcxContext _context;
    private readonly UcxWorker _worker;
    private UcxListener? _listener;
    private Task _acceptLoop = Task.CompletedTask;

    private RemoteListener(TubeNode node, UcxContext context, UcxWorker worker)
    {
        _node = node;
        _context = context;
        _worker = worker;
    }

    /// <summary>Where the node listens (the port chosen when 0 was asked).</summary>
    public IPEndPoint EndPoint => _listener?.LocalEndPoint ?? new IPEndPoint(IPAddress.None, 0);

    public static async Task<RemoteListener> StartAsync(TubeNode node, string listen, CancellationToken stop)
    {
        var at = await RemoteWire.ResolveAsync(listen, requireScheme: false, stop).ConfigureAwait(false);
        var context = UcxContext.Create(node.Options.UcxSettings);
        var remote = new RemoteListener(node, context, UcxWorker.Create(context, "faastube-remote"));
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
            UcxEndpoint endpoint;
            try
            {
                endpoint = await _listener!.AcceptAsync(stop).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ChannelClosedException)
            {
                return;
            }

            int sessions = _node.CountSessionsOf(RemoteSession.RemoteUid);
            string? refusal = sessions >= _node.Options.MaxSessionsPerUser
                ? $"The node has {_node.Options.MaxSessionsPerUser} remote clients connected, the most it allows."
                : null;
            try
            {
                RemoteSession.Start(_node, endpoint, refusal, stop);
            }
            catch (Exception e)
            {
                _ = endpoint.CloseAsync(force: true);
                _node.InternalError("accepting a remote connection", 0, e);
            }
        }
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

    /// <summary>After every session ended: the worker (whatever it still had pending fails) and the context.</summary>
    public void Dispose()
    {
        _worker.Dispose();
        _context.Dispose();
    }
}
