using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Cli;

/// <summary>Bad flags and a node that is not running: a clear message, a non-zero exit code, never a stack trace.</summary>
[TestClass]
public sealed class CommandLineErrorTests
{
    [TestMethod]
    [DataRow(new[] { "status", "--limit", "-3" }, "--limit must be between 0 and 1000; it was -3.")]
    [DataRow(new[] { "status", "--limit", "many" }, "many")]
    [DataRow(new[] { "status", "--frobnicate" }, "Unrecognized command or argument '--frobnicate'")]
    [DataRow(new[] { "top", "--interval", "0" }, "--interval must be between 0.1 and 3600 seconds")]
    [DataRow(new[] { "probe", "--topology", "dgx9" }, "dgx9")]
    [DataRow(new[] { "probe", "--sizes", "4096" }, "--sizes must be one or more sizes between 0 and 2048 MiB.")]
    [DataRow(new[] { "node", "--backend", "quantum" }, "quantum")]
    [DataRow(new[] { "node", "stray" }, "Unknown argument 'stray'")]
    [DataRow(new[] { "launch" }, "Unrecognized command or argument 'launch'")]
    public async Task A_bad_flag_is_named_with_exit_code_1(string[] args, string message)
    {
        var (code, _, error) = await CliRun.RunAsync(args);

        Assert.AreEqual(1, code, error);
        StringAssert.Contains(error, message);
        Assert.DoesNotContain("   at ", error, "no stack trace");
    }

    [TestMethod]
    [DataRow("status")]
    [DataRow("top")]
    public async Task A_node_that_is_not_running_is_named_with_exit_code_2(string command)
    {
        string socket = Path.Combine(Path.GetTempPath(), $"ft-none-{Guid.NewGuid():N}.sock");

        var (code, output, error) = await CliRun.RunAsync(command, "--socket", socket);

        Assert.AreEqual(2, code, output + error);
        Assert.AreEqual($"faastube: No FaaSTube node answers on {socket}. (NodeUnavailable)", error.Trim());
    }

    [TestMethod]
    public async Task A_socket_that_is_not_a_nodes_is_named_with_exit_code_2()
    {
        string path = Path.Combine(Path.GetTempPath(), $"ft-file-{Guid.NewGuid():N}.sock");
        await File.WriteAllTextAsync(path, "not a socket");
        try
        {
            var (code, _, error) = await CliRun.RunAsync("status", "--socket", path);
            Assert.AreEqual(2, code, error);
            StringAssert.Contains(error, $"No FaaSTube node answers on {path}");
        }
        finally
        {
            File.Delete(path);
        }
    }
}
