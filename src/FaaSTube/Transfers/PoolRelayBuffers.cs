using FaaSTube.Devices;
using FaaSTube.Memory;
using FaaSTube.Transfers.Routing;

namespace FaaSTube.Transfers;

/// <summary>
/// A <see cref="GpuMemoryPool"/> as the relay buffer source of its GPU (<see cref="IRelayBufferSource"/>):
/// each slot is a block of the pool (function <c>faastube-relay</c>) held by a lease and an open use,
/// so it is counted and never evicted while a copy relays through it. It lives here, beside the
/// engine, so that routing depends on neither the pool nor the engine, and the pool on nothing above it.
/// </summary>
/// <param name="pool">The relay GPU's pool.</param>
internal sealed class PoolRelayBuffers(GpuMemoryPool pool) : IRelayBufferSource
{
    private readonly GpuMemoryPool _pool = pool ?? throw new ArgumentNullException(nameof(pool));

    /// <inheritdoc/>
    public async ValueTask<IRelayBuffer> RentAsync(int bytes, CancellationToken cancellationToken = default)
    {
        var block = await _pool.AllocateAsync(bytes, new BlockOptions { Function = "faastube-relay" }, cancellationToken).ConfigureAwait(false);
        try
        {
            return new Rental(_pool, block, await block.UseAsync(cancellationToken).ConfigureAwait(false));
        }
        catch
        {
            _pool.Release(block, default);
            throw;
        }
    }

    private sealed class Rental(GpuMemoryPool pool, PoolBlock block, BlockUse use) : IRelayBuffer
    {
        private int _disposed;

        public DeviceMemory Memory => use.Memory;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                use.Dispose();
                pool.Release(block, default);
            }
        }
    }
}
