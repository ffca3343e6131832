using FaaSTube.Channels.Admin;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Cli;

/// <summary><c>faastube node</c> as a process of its own (answers status, stops cleanly on SIGTERM) and <c>faastube probe</c>.</summary>
[TestClass]
public sealed class NodeAndProbeCommandTests
{
    [TestMethod]
    public async Task Node_runs_a_node_that_answers_status_and_stops_cleanly_on_sigterm()
    {
        string socket = Path.Combine(Path.GetTempPath(), $"ft-{Guid.NewGuid():N}"[..20] + ".sock");
        using var node = ChildProcess.StartProgram("FaaSTube.Cli", "node", "--socket", socket, "--backend", "simulated", "--topology", "dgx1", "--FaaSTube:Node:Pool:SlabBytes=33554432");
        string line;
        while (!(line = await node.ReadLineAsync()).StartsWith("FaaSTube node on", StringComparison.Ordinal))
        {
            Assert.IsFalse(line.StartsWith("(end of output", StringComparison.Ordinal), line);
        }

        StringAssert.Contains(line, "8 Simulated GPU(s)", "--topology dgx1 reached the node");
        var status = await TubeAdmin.GetStatusAsync(socket);
        Assert.AreEqual(node.Id, status.ProcessId);
        Assert.AreEqual(8, status.Gpus.Count);
        Assert.AreEqual(0, status.Sessions.Total);

        node.Terminate();
        var (exit, output) = await node.WaitAsync();
        Assert.AreEqual(0, exit, output);
        StringAssert.Contains(output, "Stopped the node.");
        Assert.IsFalse(File.Exists(socket), "its socket is gone");
    }

    [TestMethod]
    public async Task Probe_prints_the_devices_the_topology_matrix_and_the_bandwidth_table()
    {
        var (code, output, error) = await CliRun.RunAsync("probe", "--backend", "simulated", "--topology", "dgx1", "--sizes", "1", "--iterations", "1", "--model");

        Assert.AreEqual(0, code, error);
        StringAssert.Contains(output, "Topology dgx1-v100 (nvidia-smi topo -m)");
        var cells = output.Split('\n').Select(l => l.Split('│', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            .First(c => c is ["GPU0", "X", ..]);
        CollectionAssert.AreEqual(new[] { "GPU0", "X", "NV1", "NV1", "NV2", "NV2", "SYS", "SYS", "SYS" }, cells[..9], "GPU 0's row as nvidia-smi shows a DGX-1");
        StringAssert.Contains(output, "Copy bandwidth on GPU 0, GB/s, median of 1 (link model, virtual clock)");
        StringAssert.Contains(output, "the GPU's checksum matches the host's");
        StringAssert.Contains(output, "GPU to GPU bandwidth");
    }
}
