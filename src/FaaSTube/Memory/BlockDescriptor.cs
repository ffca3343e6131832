namespace FaaSTube.Memory;

/// <summary>
/// Where a block's bytes are: (slab id, generation, offset, length) in a pool. It is what a node
/// sends to a consumer that has the slab mapped; the pool validates it on every use
/// (<see cref="GpuMemoryPool.Resolve"/>) and never trusts it.
/// </summary>
/// <param name="PoolId">The pool that made it.</param>
/// <param name="BlockId">The block it describes.</param>
/// <param name="SlabId">The slab's slot in the pool.</param>
/// <param name="Generation">The slot's generation: a freed slab's descriptors go stale.</param>
/// <param name="Offset">Byte offset in the slab.</param>
/// <param name="Length">Length in bytes.</param>
internal readonly record struct BlockDescriptor(Guid PoolId, long BlockId, int SlabId, int Generation, long Offset, long Length);
