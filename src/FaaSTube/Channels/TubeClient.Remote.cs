using System.Runtime.ExceptionServices;
using FaaSTube.Channels.Client;
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

    /// <summary>
    /// A remote client's Put from ordinary memory: each part's bytes go from <paramref name="data"/>
    /// over UCX straight into the node's window (<see cref="RemoteConnection.PutPartFromAsync"/>), with
    /// no copy into the local window mirror first. A window slot is still rented per part in flight:
    /// it names the node's range the part goes to, and bounds the parts in flight (the window's slots).
    /// </summary>
    private async Task<TubeId> PutFromMemoryRemoteAsync(ReadOnlyMemory<byte> data, PutOptions options, CancellationToken cancellationToken)
    {
        var put = await PendingPut.BeginAsync(this, data.Length, options, cancellationToken).ConfigureAwait(false);
        try
        {
            for (int offset = 0; offset < data.Length;)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (put.Failure is { } failed)
                {
                    ExceptionDispatchInfo.Throw(failed); // a part already sent was refused or lost: the Put cannot complete
                }

                int n = Math.Min(Slots.SlotBytes, data.Length - offset);
                var range = await Slots.RentAsync(1, cancellationToken).ConfigureAwait(false);
                put.Send(offset, Slots.Offset(range), n, () => Slots.Return(range), data.Slice(offset, n));
                offset += n;
            }
        }
        catch
        {
            await put.AbandonAsync().ConfigureAwait(false); // after the parts in flight: none reads the caller's memory any more
            throw;
        }

        return await put.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

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
