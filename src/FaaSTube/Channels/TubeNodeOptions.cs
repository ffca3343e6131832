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

    /// <summary>The clock of TTLs (default: the system's).</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Where the node logs.</summary>
    public ILoggerFactory? LoggerFactory { get; set; }
}

/// <summary>How a <see cref="TubeClient"/> connects.</summary>
public sealed class TubeClientOptions
{
    /// <summary>The node's socket (default <see cref="TubeNodeOptions.DefaultSocketPath"/>).</summary>
    public string SocketPath { get; set; } = TubeNodeOptions.DefaultSocketPath;

    /// <summary>The workflow this function belongs to: ids are visible only inside it.</summary>
    public string Workflow { get; set; } = "default";

    /// <summary>The function's name (for statistics and logs).</summary>
    public string Function { get; set; } = "function";

    /// <summary>The shared-memory window for host data, registered (pinned) once by the node (default 64 MiB).</summary>
    public int WindowBytes { get; set; } = 64 << 20;

    /// <summary>The client's own view of the GPUs (must be the node's backend; for the simulated GPU, the same memory folder).</summary>
    public GpuSystemOptions Gpus { get; set; } = new();

    /// <summary>The longest any call waits for the node before failing (default 60 s).</summary>
    public TimeSpan CallTimeout { get; set; } = TimeSpan.FromSeconds(60);
}

/// <summary>What to do with data after Put or Publish.</summary>
public sealed record PutOptions
{
    /// <summary>How many consumers will Get it; it is freed when that many have released it (default 1).</summary>
    public int Consumers { get; init; } = 1;

    /// <summary>Freed after this long even if not all consumers came (default: the node's).</summary>
    public TimeSpan? Ttl { get; init; }

    /// <summary>The GPU the consumer will run on: the data is placed there (default: GPU 0).</summary>
    public int? Device { get; init; }

    /// <summary>Long-lived shared data (model weights): never evicted or expired, any number of consumers; remove with <see cref="TubeClient.DeleteAsync"/>.</summary>
    public bool Pinned { get; init; }

    /// <summary>Tenant, SLO and priority of the host-to-GPU transfer.</summary>
    public Transfers.TransferRequest? Transfer { get; init; }
}
