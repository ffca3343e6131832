using FaaSTube.Channels;
using FaaSTube.Channels.Transport;
using FaaSTube.Devices;
using FaaSTube.Platform;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>The node's side of a client's window: the registration owns the mapping.</summary>
[TestClass]
public sealed class NodeWindowTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public unsafe void A_window_stays_mapped_while_a_copy_pins_it_and_is_unmapped_after_the_registration_goes()
    {
        using var system = GpuSystem.Open(new GpuSystemOptions { Backend = GpuBackend.Simulated });
        using var client = SealedSharedMemory.Create(1 << 20);
        var pattern = Seeds.Create(TestContext).Bytes(4096);
        pattern.CopyTo(client.Memory.Span);
        var duplicate = new Microsoft.Win32.SafeHandles.SafeFileHandle(
            FaaSTube.Native.Interop.Libc.fcntl((int)client.Descriptor.DangerousGetHandle(), FaaSTube.Native.Interop.Libc.F_DUPFD_CLOEXEC, 0), ownsHandle: true);

        var window = NodeWindow.Open(duplicate, 1 << 20, system.Devices[0]);
        var copy = window.Memory.Pin(); // a copy in flight holds the registration
        nint address = (nint)copy.Pointer;
        Assert.IsTrue(IsMapped(address));

        window.Dispose(); // the session ended while the copy still runs
        Assert.IsTrue(IsMapped(address), "still mapped: the copy's registration holds it");
        Assert.IsTrue(new ReadOnlySpan<byte>(copy.Pointer, pattern.Length).SequenceEqual(pattern), "and still the client's bytes");

        copy.Dispose(); // the copy ends: unregistered, then unmapped
        Assert.IsFalse(IsMapped(address), "unmapped once the registration went");
    }

    /// <summary>True when <paramref name="address"/> lies in a mapping of this process (/proc/self/maps).</summary>
    private static bool IsMapped(nint address) =>
        File.ReadLines("/proc/self/maps").Select(line => line.Split(' ')[0].Split('-')).Any(range =>
            (ulong)address >= Convert.ToUInt64(range[0], 16) && (ulong)address < Convert.ToUInt64(range[1], 16));
}
