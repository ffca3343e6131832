using FaaSTube.Channels.Remote;
using FaaSTube.Devices;
using FaaSTube.Hosting;

namespace FaaSTube.Channels;

/// <summary>
/// A client of a node on another machine (<see cref="TubeClientOptions.Address"/>, <c>ucx://host:port</c>):
/// the same API over <see cref="RemoteConnection"/>. Its window is a local mirror of a window the
/// node allocates for it; Put and Get to host memory move the bytes over UCX. Requests that hand
/// out GPU memory (Allocate, Publish, Get to a GPU) are refused by the node with
/// <see cref="TubeError.BadRequest"/>: a remote client reaches host data only.
/// </summary>
public sealed partial class TubeClient
{
    private bool _remote;

    /// <summary>Whether this client reaches its node over the network (host data only).</summary>
    public bool IsRemote => _remote;

    private static async Task<TubeClient> ConnectRemoteAsync(TubeClientOptions options, FaaSTubeServices services, CancellationToken cancellationToken)
    {
        string address = options.Address!;
        var remote = await RemoteWire.ResolveAsync(address, requireScheme: true, cancellationToken).ConfigureAwait(false);
        var window = new ClientWindow(options.WindowBytes);
        var client = new TubeClient(options, window, GpuSystem.Open(options.Gpus, services), null, services) { _remote = true };
        return await client.StartAsync(async () =>
        {
            var (connection, ok) = await RemoteConnection.ConnectAsync(remote, address, options, window.Memory, client.NewHello(), options.RemoteSecret!, client.OnOneWayFailed, cancellationToken).ConfigureAwait(false);
            client._connection = connection;
            return ok;
        }).ConfigureAwait(false);
    }
}
