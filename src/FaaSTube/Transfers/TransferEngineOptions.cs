namespace FaaSTube.Transfers;

/// <summary>Chunking, staging and scheduling of a <see cref="TransferEngine"/>.</summary>
public sealed class TransferEngineOptions
{
    /// <summary>Bytes per chunk (default 2 MiB, the paper's; the copy benchmark by chunk size says which is best on a machine).</summary>
    public int ChunkBytes { get; set; } = 2 << 20;

    /// <summary>Chunks per scheduling batch (default 5); a new transfer joins at the next batch.</summary>
    public int BatchChunks { get; set; } = 5;

    /// <summary>Pinned staging memory shared by all transfers of the device, allocated once (default 64 MiB).</summary>
    public long StagingBytes { get; set; } = 64L << 20;

    /// <summary>GPU streams per lane: chunks in flight overlap on them (default 4).</summary>
    public int StreamsPerLane { get; set; } = 4;

    /// <summary>Chunks in flight per lane, staging copy or DMA (default 16).</summary>
    public int MaxChunksInFlight { get; set; } = 16;

    /// <summary>The link's bandwidth per direction, bytes/s, for the scheduler's least-rate arithmetic (default: the topology's host link).</summary>
    public double? LinkBytesPerSecond { get; set; }

    /// <summary>A copy (what a node keeps from the moment it starts: later changes to this object do not reach it).</summary>
    internal TransferEngineOptions Clone() => (TransferEngineOptions)MemberwiseClone();

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(ChunkBytes, 4096);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(BatchChunks);
        ArgumentOutOfRangeException.ThrowIfLessThan(StagingBytes, (long)ChunkBytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(StreamsPerLane);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxChunksInFlight);
        if (LinkBytesPerSecond is <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(LinkBytesPerSecond), LinkBytesPerSecond, "The link's bandwidth is positive.");
        }

    }
}
