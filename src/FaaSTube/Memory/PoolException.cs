namespace FaaSTube.Memory;

/// <summary>What went wrong in a <see cref="GpuMemoryPool"/> call.</summary>
public enum PoolError
{
    /// <summary>Nothing could be evicted, the spill store is full, and the wait timed out.</summary>
    OutOfMemory,

    /// <summary>The holder holds no lease on the block (released twice, or never held).</summary>
    LeaseNotHeld,

    /// <summary>The block or descriptor belongs to another pool.</summary>
    Foreign,

    /// <summary>The block was freed (its last lease went), or the descriptor names an old slab generation.</summary>
    Stale,

    /// <summary>The descriptor's range lies outside its block or slab.</summary>
    OutOfBounds,

    /// <summary>
    /// The request is larger than the pool could ever hold (its cap <see cref="GpuPoolOptions.MaxBytes"/>
    /// or the device's total memory, whichever is smaller): refused at once, with nothing waited for,
    /// grown or evicted.
    /// </summary>
    TooLarge,

    /// <summary>
    /// The block's partition already holds as much as <see cref="GpuPoolOptions.MaxPartitionBytes"/>
    /// allows (resident and evicted): refused at once; other partitions are not touched for it.
    /// </summary>
    QuotaExceeded,
}

/// <summary>A pool call was refused; the pool's state is unchanged. <see cref="Error"/> says why.</summary>
public sealed class PoolException : FaaSTubeException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="error">The kind of failure.</param>
    /// <param name="message">What happened, and for <see cref="PoolError.OutOfMemory"/>, what holds the memory.</param>
    public PoolException(PoolError error, string message)
        : base(FaaSTubeErrorCode.PoolRefused, message) => Error = error;

    /// <summary>The kind of failure.</summary>
    public PoolError Error { get; }
}
