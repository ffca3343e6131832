namespace FaaSTube.Channels;

/// <summary>Where a node's network listener runs (<see cref="TubeNodeOptions.NetworkIsolation"/>).</summary>
public enum NetworkIsolation
{
    /// <summary>
    /// In the network gateway, a process of its own that the node starts and restarts: UCX runs
    /// there, so a remote peer that makes UCX abort takes down only the gateway (and the remote
    /// sessions it carried), never the node or its local clients.
    /// </summary>
    Process = 0,

    /// <summary>In the node's own process: one process fewer, but a fault inside UCX ends the node.</summary>
    InProcess = 1,
}
