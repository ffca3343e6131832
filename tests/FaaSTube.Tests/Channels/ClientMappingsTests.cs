using FaaSTube.Channels;
using FaaSTube.Devices;

namespace FaaSTube.Tests.Channels;

/// <summary>The client's table of slab mappings: each use ends once, a slab closes when its last use ends and the node asked.</summary>
[TestClass]
public sealed class ClientMappingsTests
{
    [TestMethod]
    public void A_use_ends_once_and_a_slab_closes_after_its_last_use_when_the_node_asked()
    {
        using var system = GpuSystem.Open(new GpuSystemOptions { Backend = GpuBackend.Simulated });
        var closed = new List<(int, int, int)>();
        var table = new ClientMappings(key => { closed.Add(key); return Task.CompletedTask; });
        var key = (0, 3, 1);
        int opens = 0;
        (DeviceBuffer, bool) Open()
        {
            opens++;
            return (system.Devices[0].Allocate(1 << 20), true);
        }

        var first = table.Use(key, Open);
        var second = table.Use(key, Open);
        Assert.AreEqual(1, opens, "mapped once, shared");
        Assert.AreSame(first.Slab, second.Slab);

        first.Dispose();
        first.Dispose(); // a second end (published, then disposed) must not count again
        table.CloseRequested(key);
        Assert.AreEqual(0, closed.Count, "the second use is still live: not closed under it");
        Assert.IsFalse(second.Slab.IsDisposed);

        second.Dispose();
        CollectionAssert.AreEqual(new[] { key }, closed, "closed once, when the last use ended");
        Assert.IsTrue(first.Slab.IsDisposed, "and unmapped");
        Assert.AreEqual(0, table.Mapped);

        using var again = table.Use(key, Open);
        Assert.AreEqual(2, opens, "a later use of that slab maps it anew");
        table.CloseRequested(key);
        Assert.AreEqual(1, closed.Count, "still in use");
        again.Dispose();
        Assert.AreEqual(2, closed.Count);
        Assert.AreEqual(2, table.Opened);
    }
}
