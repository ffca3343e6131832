namespace FaaSTube.Channels;

/// <summary>How data reached the caller: reported by every Get and Put, on its span, its metric and its result.</summary>
public enum TubePath : byte
{
    /// <summary>The producer's pool memory, mapped into this process: no byte was copied.</summary>
    ZeroCopy = 1,

    /// <summary>Copied once from the GPU that holds it to the caller's GPU over the best peer path (NVLink, or PCIe through the host), and kept there as a replica.</summary>
    PeerCopy = 2,

    /// <summary>It had been evicted to host memory under pressure: restored to the GPU first, then mapped.</summary>
    Restored = 3,

    /// <summary>Moved between host memory and the GPU by DMA through the client's shared window.</summary>
    HostStaged = 4,

    /// <summary>Not on this node: copied once over the network from the peer node that held it (<see cref="TubeNodeOptions.PeerNodes"/>) into this node's pool, then served as asked; later Gets find the copy here.</summary>
    NodeFetch = 5,
}

/// <summary>The <c>faastube.path</c> attribute of spans and metrics (lower snake case; <c>control</c> for requests that move no data).</summary>
internal static class TubePathTags
{
    public static string Tag(this TubePath path) => path switch
    {
        TubePath.ZeroCopy => "zero_copy",
        TubePath.PeerCopy => "peer_copy",
        TubePath.Restored => "restored",
        TubePath.HostStaged => "host_staged",
        TubePath.NodeFetch => "node_fetch",
        _ => "unknown",
    };
}
