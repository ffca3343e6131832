using System.Diagnostics;
using FaaSTube.Channels;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Cli;

/// <summary>
/// <c>faastube top</c> in a real terminal: tmux (a private server) runs it against a node in this
/// test, capture-pane reads the screen, send-keys presses q. Inconclusive where tmux is not installed
/// (.ci/run installs it).
/// </summary>
[TestClass]
public sealed class TopCommandTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task Top_draws_the_status_in_place_with_usage_bars_and_throughput_and_q_quits()
    {
        if (!OnPath("tmux"))
        {
            Assert.Inconclusive("tmux is not installed (apt-get install tmux): the live display needs a terminal to be tested in.");
        }

        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var client = await h.ConnectAsync(inProcess: false, workflow: "toptest", function: "producer");
        await client.PutAsync(random.Bytes(1 << 20), new PutOptions { KeepUntilDeleted = true });

        string server = $"ft-top-{Guid.NewGuid():N}"[..20];
        string exitFile = Path.Combine(Path.GetTempPath(), server + ".exit");
        string command = $"'{ChildProcess.DotnetHost()}' '{Path.Combine(AppContext.BaseDirectory, "FaaSTube.Cli.dll")}' top --socket '{h.Socket}' --interval 0.5; echo $? > '{exitFile}'";
        try
        {
            Tmux(server, "new-session", "-d", "-s", "top", "-x", "200", "-y", "70", command);

            string frame = await ScreenAsync(server, s => s.Contains("q quits", StringComparison.Ordinal) && s.Contains("toptest", StringComparison.Ordinal), "the first frame");
            TestContext.WriteLine(frame);
            StringAssert.Contains(frame, "usage (in use / reserved / device)");
            StringAssert.Contains(frame, "█", "a GPU usage bar");
            StringAssert.Contains(frame, "Sessions (1)");
            StringAssert.Contains(frame, "put now");

            // A Put while it runs: the next frame shows the host_staged path's throughput.
            await client.PutAsync(random.Bytes(4 << 20), new PutOptions { KeepUntilDeleted = true });
            frame = await ScreenAsync(server, s => Cells(Line(s, "host_staged")) is [_, _, _, var putNow, _] && putNow != "0 B/s", "a frame with the Put's throughput (put now)");
            StringAssert.Contains(frame, "Objects by workflow, oldest first (2)", "redrawn with the new object");
            Assert.AreEqual(1, frame.Split('\n').Count(l => l.Contains("q quits", StringComparison.Ordinal)), "redrawn in place, not appended");

            Tmux(server, "send-keys", "-t", "top", "q");
            string exit = await UntilAsync(() => File.Exists(exitFile) ? File.ReadAllText(exitFile).Trim() : null, "top to quit on q");
            Assert.AreEqual("0", exit);
        }
        finally
        {
            RunQuietly("tmux", "-L", server, "kill-server");
            File.Delete(exitFile);
        }
    }

    /// <summary>A table row's cells: path, received, transmitted, put now, get now.</summary>
    private static string[] Cells(string? row) => row?.Split('│', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) ?? [];

    private static string? Line(string screen, string containing) => screen.Split('\n').FirstOrDefault(l => l.Contains(containing, StringComparison.Ordinal));

    private static async Task<string> ScreenAsync(string server, Func<string, bool> shows, string what)
    {
        string last = "";
        return await UntilAsync(() =>
        {
            last = Tmux(server, "capture-pane", "-p", "-t", "top");
            return shows(last) ? last : null;
        }, what, () => last);
    }

    /// <summary>Polls <paramref name="probe"/> (the screen changes in another process: there is nothing to wait on) for up to 60 s.</summary>
    private static async Task<string> UntilAsync(Func<string?> probe, string what, Func<string>? describe = null)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(60))
        {
            if (probe() is { } found)
            {
                return found;
            }

            await Task.Delay(50);
        }

        Assert.Fail($"No {what} within 60 s. Screen:\n{describe?.Invoke()}");
        return "";
    }

    private static string Tmux(string server, params string[] args)
    {
        var (code, output) = Run("tmux", ["-L", server, .. args]);
        Assert.AreEqual(0, code, $"tmux {string.Join(' ', args)}: {output}");
        return output;
    }

    private static (int Code, string Output) Run(string program, string[] args)
    {
        var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        using var process = Process.Start(info)!;
        string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output);
    }

    private static void RunQuietly(string program, params string[] args)
    {
        try
        {
            Run(program, args);
        }
        catch (System.ComponentModel.Win32Exception)
        {
        }
    }

    private static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => d.Length > 0 && File.Exists(Path.Combine(d, program)));
}
