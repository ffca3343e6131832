using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace FaaSTube.Tests.Support;

/// <summary>
/// A test bed standing in for a second machine: a network namespace joined to the root namespace
/// (where the test process and the node run) by a veth pair, with a private /30 of its own in
/// 10.213.0.0/16 (the host end .1, the peer end .2). Made and removed with iproute2
/// (<c>ip netns</c>, <c>ip link</c>); programs run inside with <c>ip netns exec</c>
/// (<see cref="Exec"/>); the link is cut and restored with <c>ip link set ... down/up</c>
/// (<see cref="SetLink"/>).
/// <para>
/// Names carry the creating process's id (<c>ftpeer-PID-N</c>, the host end <c>fthPIDxN</c>), so a
/// run killed halfway leaves nothing that breaks the next: <see cref="SweepLeftovers"/> (called
/// before every <see cref="TryCreate"/>, and by <c>.ci/run</c> after the tests) kills what still runs
/// in a namespace whose creator is dead and deletes it, which deletes its veth pair with it. The /30
/// is chosen, under a machine-wide named mutex (which sweeping takes too), among those no interface of the root namespace
/// holds, so concurrent test runs on one machine do not collide.
/// </para>
/// <para>
/// <see cref="TryCreate"/> returns why it could not (not Linux, no <c>ip</c>, not permitted: not
/// root or a container without CAP_NET_ADMIN/CAP_SYS_ADMIN); tests skip with that reason. Shared by
/// the tests and the remote-baseline benchmark (linked into bench/FaaSTube.Bench).
/// </para>
/// </summary>
internal sealed partial class NetworkNamespace : IDisposable
{
    /// <summary>The prefix of every namespace this helper makes (and sweeps).</summary>
    public const string Prefix = "ftpeer-";

    private static readonly TimeSpan CommandBound = TimeSpan.FromSeconds(20);
    private static int _created;
    private int _disposed;

    private NetworkNamespace(string name, string hostLink, int subnet)
    {
        Name = name;
        HostLink = hostLink;
        HostAddress = AddressOf(subnet, 1);
        PeerAddress = AddressOf(subnet, 2);
    }

    /// <summary>The namespace's name (<c>ip netns list</c>).</summary>
    public string Name { get; }

    /// <summary>The veth end in the root namespace (the end <see cref="SetLink"/> takes down).</summary>
    public string HostLink { get; }

    /// <summary>The veth end inside the namespace.</summary>
    public string PeerLink => "ftpeer0";

    /// <summary>The root namespace's address on the link (x.x.x.1/30): where listeners for the peer bind.</summary>
    public IPAddress HostAddress { get; }

    /// <summary>The namespace's address on the link (x.x.x.2/30).</summary>
    public IPAddress PeerAddress { get; }

    /// <summary>Bytes the host end of the link has received (from the namespace) so far.</summary>
    public long HostReceivedBytes => Counter("rx_bytes");

    /// <summary>Bytes the host end of the link has sent (into the namespace) so far.</summary>
    public long HostTransmittedBytes => Counter("tx_bytes");

    /// <summary>
    /// Makes a namespace and its link; null and the reason where this machine cannot (the caller
    /// skips with it). Leftovers of killed runs are swept first.
    /// </summary>
    public static NetworkNamespace? TryCreate(out string? reason)
    {
        if (!OperatingSystem.IsLinux())
        {
            reason = "network namespaces are a Linux facility";
            return null;
        }

        if (FindIp() is null)
        {
            reason = "iproute2 is not installed ('ip' is not on PATH or in /usr/sbin, /sbin); install iproute2";
            return null;
        }

        if (!Environment.IsPrivilegedProcess)
        {
            reason = $"not root (running as {Environment.UserName}): making network namespaces and veth links needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)";
            return null;
        }

        int n = Interlocked.Increment(ref _created);
        string name = $"{Prefix}{Environment.ProcessId}-{n}";
        string hostLink = $"fth{Environment.ProcessId}x{n}";
        using var choosing = MachineLock.Acquire();
        SweepLocked();
        int subnet = FreeSubnet(n);
        var bed = new NetworkNamespace(name, hostLink, subnet);
        try
        {
            reason = bed.Build();
        }
        catch
        {
            bed.Dispose();
            throw;
        }

        if (reason is not null)
        {
            bed.Dispose();
            return null;
        }

        return bed;
    }

    /// <summary>How to start <paramref name="file"/> with <paramref name="arguments"/> inside the namespace (<c>ip netns exec</c> execs it: the process id is the program's).</summary>
    public ProcessStartInfo Exec(string file, IEnumerable<string> arguments)
    {
        var info = new ProcessStartInfo(FindIp()!) { UseShellExecute = false };
        foreach (var a in (string[])["netns", "exec", Name, file, .. arguments])
        {
            info.ArgumentList.Add(a);
        }

        return info;
    }

    /// <summary>Cuts (<paramref name="up"/> false) or restores the link: <c>ip link set HOST-END down/up</c> (the peer end loses its carrier with it).</summary>
    public void SetLink(bool up)
    {
        var (code, output) = Ip("link", "set", HostLink, up ? "up" : "down");
        if (code != 0)
        {
            throw new InvalidOperationException($"ip link set {HostLink} {(up ? "up" : "down")} failed ({code}): {output}");
        }
    }

    /// <summary>
    /// Sets a sysctl of the namespace's own network stack (<c>net.*</c> settings are per namespace),
    /// e.g. <c>net.ipv4.tcp_retries2</c> for the peer's TCP; the root namespace's are untouched.
    /// </summary>
    public void SetSysctl(string name, string value)
    {
        var (code, output) = Ip("netns", "exec", Name, "/bin/sh", "-c", $"echo {value} > /proc/sys/{name.Replace('.', '/')}");
        if (code != 0)
        {
            throw new InvalidOperationException($"setting {name}={value} in {Name} failed ({code}): {output}");
        }
    }

    /// <summary>The ids of the processes running in the namespace now (<c>ip netns pids</c>).</summary>
    public IReadOnlyList<int> Processes() => PidsIn(Name);

    /// <summary>Kills whatever still runs inside, deletes the namespace (and with it the veth pair) and the host end if it outlived it.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Remove(Name, HostLink);
        }
    }

    /// <summary>
    /// Removes the namespaces (and host ends) whose creating process is gone: a killed test run's
    /// leftovers. Returns how many namespaces it removed.
    /// </summary>
    public static int SweepLeftovers()
    {
        if (!OperatingSystem.IsLinux() || FindIp() is null || !Environment.IsPrivilegedProcess)
        {
            return 0;
        }

        using var sweeping = MachineLock.Acquire();
        return SweepLocked();
    }

    /// <summary>Runs <paramref name="action"/> holding the machine-wide lock that making and sweeping namespaces take (for a test that builds a leftover by hand).</summary>
    public static void Locked(Action action)
    {
        using var held = MachineLock.Acquire();
        action();
    }

    private static int SweepLocked()
    {
        int removed = 0;
        var (_, list) = Ip("netns", "list");
        foreach (Match m in LeftoverName().Matches(list))
        {
            if (!IsAlive(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)))
            {
                Remove(m.Value, $"fth{m.Groups[1].Value}x{m.Groups[2].Value}");
                removed++;
            }
        }

        // A host end whose namespace was never made or already went (a run killed between the two).
        var (_, links) = Ip("-o", "link", "show");
        foreach (Match m in LeftoverLink().Matches(links))
        {
            if (!IsAlive(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)))
            {
                Ip("link", "del", m.Value);
            }
        }

        return removed;
    }

    private string? Build()
    {
        var (code, output) = Ip("netns", "add", Name);
        if (code != 0)
        {
            return $"'ip netns add' is not permitted here ({output.Trim()}); the network-namespace tests need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)";
        }

        string prefix = "/30";
        string[][] steps =
        [
            ["link", "add", HostLink, "type", "veth", "peer", "name", PeerLink, "netns", Name],
            ["addr", "add", HostAddress + prefix, "dev", HostLink],
            ["link", "set", HostLink, "up"],
            ["-n", Name, "addr", "add", PeerAddress + prefix, "dev", PeerLink],
            ["-n", Name, "link", "set", PeerLink, "up"],
            ["-n", Name, "link", "set", "lo", "up"],
        ];
        foreach (var step in steps)
        {
            (code, output) = Ip(step);
            if (code != 0)
            {
                return $"'ip {string.Join(' ', step)}' failed ({output.Trim()}); the network-namespace tests need veth links (CAP_NET_ADMIN)";
            }
        }

        // ip netns exec remounts /sys in a mount namespace of its own: that needs CAP_SYS_ADMIN too.
        (code, output) = Ip("netns", "exec", Name, "/bin/sh", "-c", "exit 0");
        return code == 0 ? null : $"'ip netns exec' is not permitted here ({output.Trim()})";
    }

    private static void Remove(string name, string hostLink)
    {
        foreach (int pid in PidsIn(name))
        {
            try
            {
                using var process = Process.GetProcessById(pid);
                process.Kill(entireProcessTree: true);
                process.WaitForExit(CommandBound);
            }
            catch (ArgumentException)
            {
                // gone already
            }
            catch (InvalidOperationException)
            {
                // gone already
            }
        }

        Ip("netns", "del", name);
        if (Directory.Exists($"/sys/class/net/{hostLink}"))
        {
            Ip("link", "del", hostLink);
        }
    }

    private static List<int> PidsIn(string name)
    {
        var (code, output) = Ip("netns", "pids", name);
        return code != 0 ? [] : [.. output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(p => int.TryParse(p, CultureInfo.InvariantCulture, out int pid) ? pid : 0).Where(p => p > 0)];
    }

    /// <summary>A /30 of 10.213.0.0/16 (16,384 of them) that no interface of the root namespace holds (called under <see cref="MachineLock"/>).</summary>
    private static int FreeSubnet(int n)
    {
        var (_, addresses) = Ip("-4", "-o", "addr", "show");
        int start = (Environment.ProcessId * 37 + n * 101) & 0x3FFF;
        for (int i = 0; i < 0x4000; i++)
        {
            int subnet = (start + i) & 0x3FFF;
            if (subnet == 0)
            {
                continue;
            }

            if (!addresses.Contains($" {AddressOf(subnet, 1)}/", StringComparison.Ordinal))
            {
                return subnet;
            }
        }

        throw new InvalidOperationException("no free /30 left in 10.213.0.0/16");
    }

    private static IPAddress AddressOf(int subnet, int host)
    {
        int value = (10 << 24) | (213 << 16) | (subnet << 2) | host;
        return new IPAddress([(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value]);
    }

    private long Counter(string name) =>
        long.Parse(File.ReadAllText($"/sys/class/net/{HostLink}/statistics/{name}").Trim(), CultureInfo.InvariantCulture);

    private static bool IsAlive(int pid) => Directory.Exists($"/proc/{pid}");

    /// <summary>Where iproute2's ip is; null where it is not installed.</summary>
    public static string? IpPath => FindIp();

    private static string? FindIp()
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(["/usr/sbin", "/sbin", "/usr/bin", "/bin"]))
        {
            if (dir.Length > 0 && File.Exists(Path.Combine(dir, "ip")))
            {
                return Path.Combine(dir, "ip");
            }
        }

        return null;
    }

    /// <summary>Runs ip with <paramref name="arguments"/>, bounded; the exit code and everything it printed.</summary>
    private static (int Code, string Output) Ip(params string[] arguments)
    {
        var info = new ProcessStartInfo(FindIp()!)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        using var process = Process.Start(info) ?? throw new InvalidOperationException("ip did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(CommandBound))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"'ip {string.Join(' ', arguments)}' did not finish in {CommandBound.TotalSeconds} s");
        }

        return (process.ExitCode, stdout.GetAwaiter().GetResult() + stderr.GetAwaiter().GetResult());
    }

    [GeneratedRegex(@"\bftpeer-(\d+)-(\d+)\b")]
    private static partial Regex LeftoverName();

    [GeneratedRegex(@"\bfth(\d+)x(\d+)\b")]
    private static partial Regex LeftoverLink();

    /// <summary>A machine-wide named mutex around choosing and assigning a /30 (concurrent test runs on one machine).</summary>
    private sealed class MachineLock : IDisposable
    {
        private readonly Mutex _mutex;

        private MachineLock(Mutex mutex) => _mutex = mutex;

        public static MachineLock Acquire()
        {
            var mutex = new Mutex(false, @"Global\faastube-netns");
            try
            {
                if (!mutex.WaitOne(CommandBound))
                {
                    throw new TimeoutException($"another process held the network-namespace lock for {CommandBound.TotalSeconds} s");
                }
            }
            catch (AbandonedMutexException)
            {
                // a run killed while it held the lock: the lock is ours now
            }

            return new MachineLock(mutex);
        }

        public void Dispose()
        {
            _mutex.ReleaseMutex();
            _mutex.Dispose();
        }
    }
}
