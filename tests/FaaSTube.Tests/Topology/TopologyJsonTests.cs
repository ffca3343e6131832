using FaaSTube.Topology;

namespace FaaSTube.Tests.Topology;

[TestClass]
public sealed class TopologyJsonTests
{
    [TestMethod]
    public void A_preset_written_as_json_reads_back_the_same()
    {
        foreach (var preset in new[] { GpuTopology.Dgx1V100, GpuTopology.DgxA100, GpuTopology.SingleH100 })
        {
            var back = TopologyJson.Parse(TopologyJson.Write(preset));

            Assert.AreEqual(preset.Name, back.Name);
            Assert.AreEqual(preset.GpuCount, back.GpuCount);
            Assert.AreEqual(preset.HostBytesPerSecond, back.HostBytesPerSecond, 1);
            Assert.AreEqual(preset.PcieGeneration, back.PcieGeneration);
            Assert.AreEqual(preset.PcieWidth, back.PcieWidth);
            for (int a = 0; a < preset.GpuCount; a++)
            {
                Assert.AreEqual(preset.PcieSwitch(a), back.PcieSwitch(a));
                Assert.AreEqual(preset.NumaNode(a), back.NumaNode(a));
                for (int b = 0; b < preset.GpuCount; b++)
                {
                    Assert.AreEqual(preset.Peer(a, b).Kind, back.Peer(a, b).Kind);
                    Assert.AreEqual(preset.Peer(a, b).LinkCount, back.Peer(a, b).LinkCount);
                    Assert.AreEqual(preset.Peer(a, b).BytesPerSecond, back.Peer(a, b).BytesPerSecond, 1);
                }
            }
        }
    }

    [TestMethod]
    public void A_hand_written_file_with_symmetric_links_loads()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, """
                { "name": "two-gpus", "hostGBps": 25, "pcieSwitch": [0, 1],
                  "links": [ { "from": 0, "to": 1, "kind": "NvLink", "count": 4, "GBps": 100, "symmetric": true } ] }
                """);

            var t = TopologyJson.Load(path);

            Assert.AreEqual(2, t.GpuCount);
            Assert.AreEqual(new PeerLink(PeerLinkKind.NvLink, 4, 100e9), t.Peer(1, 0));
            Assert.AreEqual(25e9, t.HostBytesPerSecond);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestMethod]
    public void Malformed_or_inconsistent_json_is_a_format_error()
    {
        Assert.ThrowsExactly<FormatException>(() => TopologyJson.Parse("{ not json"));
        Assert.ThrowsExactly<FormatException>(() => TopologyJson.Parse("""{ "pcieSwitch": [] }"""));
        Assert.ThrowsExactly<FormatException>(() => TopologyJson.Parse("""{ "pcieSwitch": [0], "links": [ { "from": 0, "to": 3, "GBps": 1 } ] }"""));
        Assert.ThrowsExactly<FormatException>(() => TopologyJson.Parse("""{ "pcieSwitch": [0, 0], "numaNode": [0] }"""));
    }
}
