using FaaSTube.Native.Handles;

namespace FaaSTube.Native.Ucx;

/// <summary>
/// A UCP context for tagged and active messages with wake-ups (a progress thread can sleep), and
/// its registered memory. The settings of <see cref="Create"/> are UCX configuration values without the
/// UCX_ prefix; <see cref="TcpOnly"/> keeps UCX to TCP sockets, as between two machines, and
/// <see cref="LoopbackTcp"/> to TCP over <c>lo</c>.
/// </summary>
internal sealed unsafe class UcxContext(SafeUcpContextHandle handle) : IDisposable
{
    /// <summary>TLS=tcp: TCP sockets only (no shared memory), what two machines would use; the devices from UCX_NET_DEVICES (else all).</summary>
    public static readonly IReadOnlyDictionary<string, string> TcpOnly = new Dictionary<string, string> { ["TLS"] = "tcp" };

    /// <summary>
    /// TCP over <c>lo</c> only: two endpoints on one machine that do not depend on any other device
    /// (UCX opens a TCP interface per device; one that vanishes meanwhile, a veth of the namespace test
    /// bed, reset a loopback connection under a test in CI).
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string> LoopbackTcp = new Dictionary<string, string> { ["TLS"] = "tcp", ["NET_DEVICES"] = "lo" };

    internal SafeUcpContextHandle Handle { get; } = handle;

    /// <summary>The UCP features the context was created with (UCP_FEATURE_*).</summary>
    public ulong Features { get; private init; } = Interop.Ucp.FEATURE_TAG | Interop.Ucp.FEATURE_AM | Interop.Ucp.FEATURE_WAKEUP;

    /// <summary>Whether tagged messages are enabled (with active messages only, UCX drops every tagged message it receives, unbuffered).</summary>
    public bool HasTags => (Features & Interop.Ucp.FEATURE_TAG) != 0;

    public static UcxContext Create(IReadOnlyDictionary<string, string>? settings = null) =>
        new(SafeUcpContextHandle.Create(
            Interop.Ucp.FEATURE_TAG | Interop.Ucp.FEATURE_AM | Interop.Ucp.FEATURE_WAKEUP, settings));

    /// <summary>
    /// A context for active messages only (no tags, no RMA, no streams): UCX installs no handler
    /// for the other protocols, so a peer's tagged, stream or RMA messages are dropped as they
    /// arrive (never queued as unexpected), and every message that is kept goes through a handler
    /// of ours (<see cref="UcxWorker.SetMessageHandlerAsync"/>).
    /// </summary>
    public static UcxContext CreateForActiveMessages(IReadOnlyDictionary<string, string>? settings = null) =>
        new(SafeUcpContextHandle.Create(Interop.Ucp.FEATURE_AM | Interop.Ucp.FEATURE_WAKEUP, settings))
        {
            Features = Interop.Ucp.FEATURE_AM | Interop.Ucp.FEATURE_WAKEUP,
        };

    /// <summary>Registers host memory (kept alive and pinned by the caller until the handle is disposed).</summary>
    public SafeUcpMemoryHandle Register(void* address, nuint length) => SafeUcpMemoryHandle.Map(Handle, address, length);

    public void Dispose() => Handle.Dispose();
}
