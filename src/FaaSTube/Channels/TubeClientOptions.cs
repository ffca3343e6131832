using FaaSTube.Devices;

namespace FaaSTube.Channels;

/// <summary>How a <see cref="TubeClient"/> connects.</summary>
public sealed class TubeClientOptions
{
    /// <summary>The node's socket (default <see cref="TubeNodeOptions.DefaultSocketPath"/>).</summary>
    public string SocketPath { get; set; } = TubeNodeOptions.DefaultSocketPath;

    /// <summary>
    /// A node on another machine, as <c>ucx://host:port</c> (its <see cref="TubeNodeOptions.NetworkListen"/>);
    /// null (the default): the node on this machine at <see cref="SocketPath"/>. A remote client reaches
    /// host data only (Put, Get to host memory, Where, Release, Delete) and proves its workflow with
    /// <see cref="RemoteSecret"/>.
    /// </summary>
    public string? Address { get; set; }

    /// <summary>The workflow's secret, as the node's <see cref="TubeNodeOptions.RemoteSecrets"/> has it (remote clients only; it never crosses the network).</summary>
    public byte[]? RemoteSecret { get; set; }

    /// <summary>UCX settings of a remote client (names without the <c>UCX_</c> prefix, e.g. <c>TLS=tcp</c>); null: UCX's defaults and environment.</summary>
    internal IReadOnlyDictionary<string, string>? UcxSettings { get; set; }

    /// <summary>The workflow this function belongs to: ids are visible only inside it.</summary>
    public string Workflow { get; set; } = "default";

    /// <summary>The function's name (for statistics and logs).</summary>
    public string Function { get; set; } = "function";

    /// <summary>The shared-memory window for host data, registered (pinned) once by the node (default 64 MiB).</summary>
    public int WindowBytes { get; set; } = 64 << 20;

    /// <summary>The client's own view of the GPUs (must be the node's backend; for the simulated GPU, the same memory folder).</summary>
    public GpuSystemOptions Gpus { get; set; } = new();

    /// <summary>The user the node runs as (checked with SO_PEERCRED before the window is handed over); null: this process's own user or root.</summary>
    public uint? NodeUid { get; set; }

    /// <summary>How long a Get waits for data that is allocated but not yet published (default 30 s; never more than half of <see cref="CallTimeout"/>, and the node may allow less).</summary>
    public TimeSpan PublishWait { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The shared-memory control ring's size per direction (a power of two, 4 KiB to 1 MiB; default
    /// 64 KiB); 0: requests go over the socket. With a ring, requests and answers after the handshake
    /// cross in shared memory (no system call while both sides are busy); the socket still carries
    /// the handshake and the node's pushes, and its close is how either side sees the other die.
    /// In-process clients use neither: they call the node directly.
    /// </summary>
    public int ControlRingBytes { get; set; } = 64 << 10;

    /// <summary>
    /// The size of the arena ranges this client leases (0, the default: no arena, every
    /// <see cref="TubeClient.AllocateAsync"/> is a round trip). With a size, allocations up to it are
    /// carved from a range of pool memory the client holds, with no round trip; the next range is
    /// leased ahead once the one in use is half used, an exhausted range is returned at once, and idle
    /// ones after <see cref="ArenaIdleTime"/>. Off by default because a range is memory the client
    /// holds whether it uses it or not, charged to its workflow's quota and not evictable while held:
    /// it pays for producers that allocate many buffers in a row (size it to several of them), not
    /// for a function that allocates once per invocation. At least 64 KiB.
    /// </summary>
    public long ArenaBytes { get; set; }

    /// <summary>How long an arena range may go unused before it is returned (default 2 s; between one and two of these after the last allocation from it).</summary>
    public TimeSpan ArenaIdleTime { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>The longest any call waits for the node before failing (default 60 s).</summary>
    public TimeSpan CallTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first option out of range.</summary>
    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(WindowBytes, 8 << 10, nameof(WindowBytes));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(CallTimeout, TimeSpan.Zero, nameof(CallTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThan(PublishWait, TimeSpan.Zero, nameof(PublishWait));
        if (ArenaBytes != 0 && ArenaBytes < 64 << 10)
        {
            throw new ArgumentOutOfRangeException(nameof(ArenaBytes), ArenaBytes, "An arena range is at least 64 KiB (or 0: no arena).");
        }

        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ArenaIdleTime, TimeSpan.Zero, nameof(ArenaIdleTime));
        if (Address is not null && RemoteSecret is null)
        {
            throw new ArgumentException("A remote client (Address) needs its workflow's RemoteSecret.", nameof(RemoteSecret));
        }

        if (ControlRingBytes != 0 && (ControlRingBytes < 4 << 10 || ControlRingBytes > 1 << 20 || (ControlRingBytes & (ControlRingBytes - 1)) != 0))
        {
            throw new ArgumentOutOfRangeException(nameof(ControlRingBytes), ControlRingBytes, "A control ring holds a power of two from 4 KiB to 1 MiB (or 0: none).");
        }
    }
}
