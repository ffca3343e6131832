using FaaSTube.Channels;
using FaaSTube.Kernels;

namespace FaaSTube.Tests.Support;

/// <summary>
/// A contract's tests, run once per transport: each test class derives from its contract three
/// times (in process, over the socket, over the control ring), and every check is the same whichever
/// way the requests go.
/// </summary>
public abstract class PerTransportTests
{
    public TestContext TestContext { get; set; } = null!;

    /// <summary>In-process clients (direct calls) rather than socket ones.</summary>
    private protected abstract bool InProcess { get; }

    /// <summary>The client's control ring per direction; 0: none (requests over the socket).</summary>
    private protected virtual int ControlRingBytes => 0;

    /// <summary>A client of <paramref name="workflow"/> over this class's transport.</summary>
    private protected Task<TubeClient> Connect(NodeHarness h, string workflow = "wf") => h.ConnectAsync(InProcess, workflow, controlRingBytes: ControlRingBytes);

    /// <summary>The checksum of a buffer's bytes, computed on its GPU.</summary>
    private protected static async Task<ulong> ChecksumAsync(TubeBuffer buffer)
    {
        using var stream = buffer.Device.CreateStream();
        return await stream.ChecksumAsync(buffer.Memory);
    }
}
