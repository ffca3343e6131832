using FaaSTube.Channels;

namespace FaaSTube.Samples.Workflow;

/// <summary>
/// The workflow's front door: frames arrive here as host bytes and the classifiers' results leave
/// from here as host bytes, in each <see cref="Mode"/> its own way. It only touches host memory with
/// the CPU, so it registers nothing; the stages that DMA from and to the regions do.
/// </summary>
internal sealed class Gateway(TubeClient client) : IAsyncDisposable
{
    private readonly Dictionary<string, HostRegion> _outputs = []; // best: the classifiers' regions, mapped once
    private HostRegion? _frames;                                   // best: one frames region, reused

    /// <summary>Puts the frames where the first stage reads them; returns the reference to pass it.</summary>
    /// <param name="mode">The mode.</param>
    /// <param name="frames">The request's frames.</param>
    /// <param name="files">Typical: the new shared-memory object is added here, to delete after the request.</param>
    public async Task<string> ArriveAsync(Mode mode, byte[] frames, List<string> files)
    {
        switch (mode)
        {
            case Mode.Tube:
                return (await client.PutAsync(frames)).ToString(); // host -> GPU pool, pinned window
            case Mode.HostBest:
                _frames ??= HostRegion.Create(frames.Length, deleteOnDispose: true);
                frames.CopyTo(_frames.Memory);
                return _frames.Path;
            default:
                using (var region = HostRegion.Create(frames.Length, deleteOnDispose: false))
                {
                    frames.CopyTo(region.Memory);
                    files.Add(region.Path);
                    return region.Path;
                }
        }
    }

    /// <summary>Brings one classifier's output into the reply (host bytes).</summary>
    public async Task<byte[]> CollectAsync(Mode mode, string reference)
    {
        var result = new byte[Stage.Classify.OutputBytes];
        switch (mode)
        {
            case Mode.Tube:
                await client.GetAsync(TubeId.Parse(reference), result.AsMemory());
                break;
            case Mode.HostBest:
                if (!_outputs.TryGetValue(reference, out var region))
                {
                    _outputs[reference] = region = HostRegion.Open(reference);
                }

                region.Memory.CopyTo(result);
                break;
            default:
                using (var typical = HostRegion.Open(reference))
                {
                    typical.Memory.CopyTo(result);
                }

                break;
        }

        return result;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var region in _outputs.Values)
        {
            region.Dispose();
        }

        _frames?.Dispose();
        await client.DisposeAsync();
    }
}
