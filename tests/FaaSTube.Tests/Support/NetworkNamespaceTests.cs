using System.Diagnostics;

namespace FaaSTube.Tests.Support;

/// <summary>
/// The network-namespace test bed itself (<see cref="NetworkNamespace"/>): what it makes, that its
/// link can be cut and restored, that it leaves nothing behind, and that a killed run's leftovers
/// are swept. Skipped (inconclusive, with the reason) where namespaces cannot be made.
/// </summary>
[TestClass]
public sealed class NetworkNamespaceTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task A_namespace_gets_a_veth_link_of_its_own_and_leaves_nothing_behind()
    {
        string name, hostLink;
        using (var bed = Open())
        {
            name = bed.Name;
            hostLink = bed.HostLink;
            TestContext.WriteLine($"{bed.Name}: {bed.HostLink} {bed.HostAddress} <-> {bed.PeerLink} {bed.PeerAddress}");
            Assert.IsTrue(Directory.Exists($"/sys/class/net/{bed.HostLink}"), "the host end is in the root namespace");
            Assert.IsFalse(Directory.Exists($"/sys/class/net/{bed.PeerLink}"), "the peer end is not in the root namespace");

            // Inside: the peer end (with its address) and loopback only; none of the root namespace's interfaces.
            var (code, output) = await RunInsideAsync(bed, "/bin/sh", "-c", "ls /sys/class/net; cat /proc/net/fib_trie");
            Assert.AreEqual(0, code, output);
            var interfaces = output.Split('\n').TakeWhile(l => !l.StartsWith("Main:", StringComparison.Ordinal) && !l.StartsWith("Local:", StringComparison.Ordinal))
                .Where(l => l.Length > 0).Order().ToArray();
            CollectionAssert.AreEqual(new[] { "ftpeer0", "lo" }, interfaces, output);
            StringAssert.Contains(output, bed.PeerAddress.ToString());

            Assert.AreEqual("1", await ReadCarrierAsync(bed), "carrier with the link up");
            bed.SetLink(up: false);
            Assert.AreEqual("0", await ReadCarrierAsync(bed), "no carrier inside once the host end is down");
            bed.SetLink(up: true);
            Assert.AreEqual("1", await ReadCarrierAsync(bed), "carrier again once it is up");
        }

        Assert.IsFalse(File.Exists($"/run/netns/{name}"), "the namespace is gone");
        Assert.IsFalse(Directory.Exists($"/sys/class/net/{hostLink}"), "the veth pair is gone");
    }

    [TestMethod]
    public async Task A_killed_runs_leftovers_are_swept_with_whatever_still_runs_in_them()
    {
        using var bed = Open(); // proves the machine allows it; the leftover below is made by hand
        int dead = DeadProcessId();
        string name = $"{NetworkNamespace.Prefix}{dead}-1", link = $"fth{dead}x1";
        Process? inside = null;
        NetworkNamespace.Locked(() =>
        {
            // Under the lock sweeps take: no other sweep (a parallel test class, another test run) can remove it half made.
            Ip("netns", "add", name);
            Ip("link", "add", link, "type", "veth", "peer", "name", "ftpeer0", "netns", name);
            inside = Process.Start(new ProcessStartInfo(NetworkNamespace.IpPath!, ["netns", "exec", name, "/bin/sh", "-c", "echo inside; exec sleep 600"])
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
            })!;
            Assert.AreEqual("inside", inside.StandardOutput.ReadLine(), "a process runs in the leftover");
        });
        using var running = inside!;
        Assert.IsTrue(Directory.Exists($"/sys/class/net/{link}"));

        NetworkNamespace.SweepLeftovers();

        Assert.IsFalse(File.Exists($"/run/netns/{name}"), "the leftover namespace is gone");
        Assert.IsFalse(Directory.Exists($"/sys/class/net/{link}"), "its veth pair is gone");
        await running.WaitForExitAsync().WaitAsync(Bound); // killed by the sweep
        Assert.IsTrue(File.Exists($"/run/netns/{bed.Name}"), "a live run's namespace is left alone");
        Assert.IsTrue(Directory.Exists($"/sys/class/net/{bed.HostLink}"));
    }

    private NetworkNamespace Open()
    {
        var bed = NetworkNamespace.TryCreate(out string? reason);
        if (bed is null)
        {
            Assert.Inconclusive($"network namespaces cannot be made here: {reason}");
        }

        return bed;
    }

    /// <summary>A process id that was alive a moment ago and is not now (a leftover's creator).</summary>
    private static int DeadProcessId()
    {
        using var gone = Process.Start(new ProcessStartInfo("/bin/true") { UseShellExecute = false })!;
        gone.WaitForExit();
        return gone.Id;
    }

    private static async Task<string> ReadCarrierAsync(NetworkNamespace bed)
    {
        var (code, output) = await RunInsideAsync(bed, "/bin/cat", $"/sys/class/net/{bed.PeerLink}/carrier");
        return code == 0 ? output.Trim() : "0"; // reading carrier of a link without one fails with EINVAL
    }

    private static async Task<(int Code, string Output)> RunInsideAsync(NetworkNamespace bed, string file, params string[] args)
    {
        var info = bed.Exec(file, args);
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        using var process = Process.Start(info)!;
        using var cts = new CancellationTokenSource(Bound);
        var stdout = process.StandardOutput.ReadToEndAsync(cts.Token);
        var stderr = process.StandardError.ReadToEndAsync(cts.Token);
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, await stdout + await stderr);
    }

    private static void Ip(params string[] args)
    {
        using var process = Process.Start(new ProcessStartInfo(NetworkNamespace.IpPath!, args) { UseShellExecute = false, RedirectStandardError = true })!;
        string errors = process.StandardError.ReadToEnd();
        Assert.IsTrue(process.WaitForExit(Bound), $"ip {string.Join(' ', args)} did not finish");
        Assert.AreEqual(0, process.ExitCode, $"ip {string.Join(' ', args)}: {errors}");
    }
}
