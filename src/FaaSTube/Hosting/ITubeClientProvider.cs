using FaaSTube.Channels;

namespace FaaSTube.Hosting;

/// <summary>
/// Function code's way to the machine's node, from dependency injection
/// (<see cref="FaaSTubeServiceCollectionExtensions.AddFaaSTubeClient"/>): one shared
/// <see cref="TubeClient"/>, connected on first use and again after the node came back.
/// <code>
/// public sealed class Resize(ITubeClientProvider tubes)
/// {
///     public async Task&lt;TubeId&gt; RunAsync(byte[] image, CancellationToken ct)
///     {
///         var client = await tubes.GetClientAsync(ct);
///         return await client.PutAsync(image, cancellationToken: ct);
///     }
/// }
/// </code>
/// </summary>
public interface ITubeClientProvider
{
    /// <summary>
    /// The connected client: the one already connected (no wait), or a new connection when there is
    /// none yet or the node went away since (the old client is closed then). A call on a client whose
    /// node has just gone fails with <see cref="TubeNodeUnavailableException"/>; the next
    /// <see cref="GetClientAsync"/> then connects anew (or throws the same while no node is there).
    /// </summary>
    /// <param name="cancellationToken">Cancels a connection attempt.</param>
    /// <exception cref="TubeNodeUnavailableException">No node answers (<see cref="FaaSTubeErrorCode.NodeUnavailable"/>); a later call tries again.</exception>
    ValueTask<TubeClient> GetClientAsync(CancellationToken cancellationToken = default);
}
