using FaaSTube.Native.Handles;

namespace FaaSTube.Native.Ucx;

/// <summary>
/// A UCP context for tagged and active messages with wake-ups (a progress thread can sleep), and
/// its registered memory. The settings of <see cref="Create"/> are UCX configuration values without the
/// UCX_ prefix; <see cref="LoopbackTcp"/> keeps UCX to TCP sockets, as between two machines.
/// </summary>
internal sealed unsafe class UcxContext(SafeUcpContextHandle handle) : IDisposable
{
    /// <summary>TLS=tcp: TCP sockets only (no shared memory), what two machines would use.</summary>
    public static readonly IReadOnlyDictionary<string, string> LoopbackTcp = new Dictionary<string, string> { ["TLS"] = "tcp" };

    internal SafeUcpContextHandle Handle { get; } = handle;

    public static UcxContext Create(IReadOnlyDictionary<string, string>? settings = null) =>
        new(SafeUcpContextHandle.Create(
            Interop.Ucp.FEATURE_TAG | Interop.Ucp.FEATURE_AM | Interop.Ucp.FEATURE_WAKEUP, settings));

    /// <summary>Registers host memory (kept alive and pinned by the caller until the handle is disposed).</summary>
    public SafeUcpMemoryHandle Register(void* address, nuint length) => SafeUcpMemoryHandle.Map(Handle, address, length);

    public void Dispose() => Handle.Dispose();
}
