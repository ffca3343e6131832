using FaaSTube.Devices;
using FaaSTube.Memory;
using FaaSTube.Transfers;
using Microsoft.Extensions.Logging;

namespace FaaSTube.Channels;

/// <summary>How a <see cref="TubeNode"/> runs.</summary>
public sealed class TubeNodeOptions
{
    /// <summary>The Unix socket clients connect to (default <see cref="DefaultSocketPath"/>); null: in-process clients only.</summary>
    public string? SocketPath { get; set; } = DefaultSocketPath;

    /// <summary><c>$XDG_RUNTIME_DIR/faastube.sock</c>, or <c>/tmp/faastube-{user}.sock</c>.</summary>
    public static string DefaultSocketPath =>
        Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR") is { Length: > 0 } run
            ? Path.Combine(run, "faastube.sock")
            : Path.Combine(Path.GetTempPath(), $"faastube-{Environment.UserName}.sock");

    /// <summary>The GPUs (backend, simulated topology).</summary>
    public GpuSystemOptions Gpus { get; set; } = new();

    /// <summary>The pool of each GPU.</summary>
    public GpuPoolOptions Pool { get; set; } = new();

    /// <summary>The transfer engine of each GPU.</summary>
    public TransferEngineOptions Transfers { get; set; } = new();

    /// <summary>User ids allowed to connect (checked with SO_PEERCRED); null: only the node's own user.</summary>
    public IReadOnlyCollection<uint>? AllowedUids { get; set; }

    /// <summary>The largest control frame accepted (default 64 KiB; bulk data never goes over the socket).</summary>
    public int MaxFrameBytes { get; set; } = 64 << 10;

    /// <summary>How long unconsumed data is kept when Put gives no TTL (default 10 minutes).</summary>
    public TimeSpan DefaultTtl { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>How often expired data is swept (default 1 s); null: only by <see cref="TubeNode.SweepExpired"/>.</summary>
    public TimeSpan? SweepInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The longest TTL a client may ask for (default 7 days); longer-lived data is put as pinned.</summary>
    public TimeSpan MaxTtl { get; set; } = TimeSpan.FromDays(7);

    /// <summary>Requests one connection may have running at once (default 64); the node reads no further frame of it until one ends.</summary>
    public int MaxRequestsInFlight { get; set; } = 64;

    /// <summary>Connections one user id may hold at once (default 1024); more are refused with <see cref="TubeError.AccessDenied"/>.</summary>
    public int MaxSessionsPerUser { get; set; } = 1024;

    /// <summary>How long a new connection has to send Hello with its window (default 5 s); then it is closed.</summary>
    public TimeSpan HelloTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The clock of TTLs (default: the system's).</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Where the node logs.</summary>
    public ILoggerFactory? LoggerFactory { get; set; }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first option out of range.</summary>
    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxFrameBytes, 1 << 10, nameof(MaxFrameBytes));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(DefaultTtl, TimeSpan.Zero, nameof(DefaultTtl));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxTtl, DefaultTtl, nameof(MaxTtl));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxTtl, TimeSpan.FromDays(3650), nameof(MaxTtl));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxRequestsInFlight, nameof(MaxRequestsInFlight));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxSessionsPerUser, nameof(MaxSessionsPerUser));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(HelloTimeout, TimeSpan.Zero, nameof(HelloTimeout));
        ArgumentNullException.ThrowIfNull(TimeProvider, nameof(TimeProvider));
    }
}
