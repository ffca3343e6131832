using FaaSTube.Topology;

namespace FaaSTube.Tests.Topology;

[TestClass]
public sealed class TopologyPresetTests
{
    [TestMethod]
    public void Dgx1_has_the_hybrid_cube_mesh_of_the_paper()
    {
        var t = GpuTopology.Dgx1V100;
        int none = 0, single = 0, pairs = 0;
        for (int a = 0; a < 8; a++)
        {
            for (int b = a + 1; b < 8; b++)
            {
                pairs++;
                Assert.AreEqual(t.Peer(a, b), t.Peer(b, a), $"links {a}-{b} must be symmetric");
                none += t.Peer(a, b).LinkCount == 0 ? 1 : 0;
                single += t.Peer(a, b).LinkCount == 1 ? 1 : 0;
            }
        }

        Assert.AreEqual(28, pairs);
        Assert.AreEqual(12, none, "42% of pairs have no direct NVLink");
        Assert.AreEqual(8, single, "28% of pairs have one link (half bandwidth)");
        Assert.AreEqual(new PeerLink(PeerLinkKind.NvLink, 2, 48e9), t.Peer(0, 3));
        Assert.AreEqual(12e9, t.HostBytesPerSecond);
        Assert.AreEqual((3, 16), (t.PcieGeneration, t.PcieWidth));
        Assert.AreEqual(0, t.NumaNode(3));
        Assert.AreEqual(1, t.NumaNode(4));
        Assert.AreEqual(t.PcieSwitch(0), t.PcieSwitch(1));
        Assert.AreNotEqual(t.PcieSwitch(1), t.PcieSwitch(2));
    }

    [TestMethod]
    public void Dgx_a100_is_all_to_all_through_nvswitch()
    {
        var t = GpuTopology.DgxA100;
        for (int a = 0; a < 8; a++)
        {
            for (int b = 0; b < 8; b++)
            {
                Assert.AreEqual(a == b ? PeerLinkKind.None : PeerLinkKind.NvSwitch, t.Peer(a, b).Kind);
            }
        }

        Assert.AreEqual(25e9, t.HostBytesPerSecond);
        Assert.AreEqual((4, 16), (t.PcieGeneration, t.PcieWidth));
    }

    [TestMethod]
    public void The_h100_preset_has_one_gpu_and_no_peers()
    {
        var t = GpuTopology.FromName("h100");
        Assert.AreEqual(1, t.GpuCount);
        Assert.AreEqual((5, 16), (t.PcieGeneration, t.PcieWidth));
        Assert.AreEqual(default, t.Peer(0, 0));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => t.Peer(0, 1));
        Assert.ThrowsExactly<ArgumentException>(() => GpuTopology.FromName("tpu-pod"));
    }

    [TestMethod]
    public void Pci_functions_behind_one_upstream_port_share_a_switch_key()
    {
        var functions = Directory.Exists("/sys/bus/pci/devices") ? Directory.GetFileSystemEntries("/sys/bus/pci/devices").Select(Path.GetFileName).ToList() : [];
        if (functions.Count == 0)
        {
            Assert.Inconclusive("No PCI devices in sysfs here.");
        }

        var keys = functions.ToDictionary(f => f!, f => FaaSTube.Devices.Cuda.CudaTopology.SwitchOf(f!));
        foreach (var (function, key) in keys)
        {
            var target = new DirectoryInfo($"/sys/bus/pci/devices/{function}").ResolveLinkTarget(true)!.FullName;
            StringAssert.StartsWith(target, key, $"{function}'s switch key is an ancestor of its sysfs path");
        }

        Assert.AreEqual("0000:1b", FaaSTube.Devices.Cuda.CudaTopology.SwitchOf("0000:1b:00.0-not-in-sysfs")[..7], "without sysfs: domain and bus");
    }
}
