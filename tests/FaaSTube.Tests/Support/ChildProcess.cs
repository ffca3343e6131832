using System.Diagnostics;
using System.Runtime.InteropServices;
using FaaSTube.Native;

namespace FaaSTube.Tests.Support;

/// <summary>Starts the FaaSTube.TestChild helper as a real process, with bounded waits.</summary>
internal sealed class ChildProcess : IDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly Process _process;

    private ChildProcess(Process process) => _process = process;

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>Writes one line to the child's stdin.</summary>
    public async Task SendLineAsync(string line)
    {
        await _process.StandardInput.WriteLineAsync(line);
        await _process.StandardInput.FlushAsync();
    }

    /// <summary>Starts the helper on the simulated GPU (FAASTUBE_BACKEND=simulated), like the nodes of most tests.</summary>
    public static ChildProcess Start(params string[] args) => StartWith("simulated", args);

    /// <summary>Starts the helper on the simulated GPU with at most <paramref name="maxFiles"/> open descriptors (RLIMIT_NOFILE, through the shell's ulimit).</summary>
    public static ChildProcess StartLimited(int maxFiles, params string[] args) =>
        StartWith("simulated", args, $"ulimit -n {maxFiles} && exec \"$0\" \"$@\"");

    /// <summary>True when the child has at least <paramref name="count"/> descriptors open now.</summary>
    public Task<bool> HasOpenDescriptorsAsync(int count) =>
        Task.FromResult(!_process.HasExited && Directory.GetFiles($"/proc/{_process.Id}/fd").Length >= count);

    /// <summary>Waits (bounded) until the child has at least (or, <paramref name="below"/>, fewer than) <paramref name="count"/> descriptors open (read from /proc); false if it never does.</summary>
    public async Task<bool> WaitForOpenDescriptorsAsync(int count, bool below = false)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (DateTime.UtcNow < deadline && !_process.HasExited)
        {
            if (Directory.GetFiles($"/proc/{_process.Id}/fd").Length >= count != below)
            {
                return true;
            }

            await Task.Delay(20); // polls a condition another process reaches; nothing here can signal it
        }

        return false;
    }

    /// <summary>Starts the helper with FAASTUBE_BACKEND=<paramref name="backend"/>.</summary>
    public static ChildProcess StartWith(string backend, params string[] args) => StartWith(backend, args, shell: null);

    /// <summary>Starts the helper on the simulated GPU with extra <paramref name="environment"/> (a secret that must not be on its command line).</summary>
    public static ChildProcess StartWithEnvironment(IReadOnlyDictionary<string, string> environment, params string[] args) => StartWith("simulated", args, shell: null, environment: environment);

    /// <summary>Starts another program built beside the tests (a sample), on the simulated GPU.</summary>
    public static ChildProcess StartProgram(string assembly, params string[] args) => StartWith("simulated", args, shell: null, assembly);

    /// <summary>
    /// Starts the helper inside <paramref name="bed"/>'s network namespace (<c>ip netns exec</c>, which
    /// execs it: <see cref="Id"/> is the helper's) with extra <paramref name="environment"/>. Killed by
    /// <see cref="Dispose"/>, and by the namespace's own disposal or the next run's sweep if this
    /// process dies first; the ucx-peer mode also exits when its stdin closes.
    /// </summary>
    public static ChildProcess StartIn(NetworkNamespace bed, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var info = bed.Exec(DotnetHost(), [Path.Combine(AppContext.BaseDirectory, "FaaSTube.TestChild.dll"), .. args]);
        info.RedirectStandardInput = true;
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.Environment["FAASTUBE_BACKEND"] = "simulated";
        foreach (var (name, value) in environment)
        {
            info.Environment[name] = value;
        }

        return new ChildProcess(Process.Start(info) ?? throw new InvalidOperationException("the child did not start"));
    }

    private static ChildProcess StartWith(string backend, string[] args, string? shell, string assembly = "FaaSTube.TestChild", IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(shell is null ? DotnetHost() : "/bin/sh")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (shell is not null)
        {
            info.ArgumentList.Add("-c");
            info.ArgumentList.Add(shell);
            info.ArgumentList.Add(DotnetHost());
        }

        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, assembly + ".dll"));
        info.Environment["FAASTUBE_BACKEND"] = backend;
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }

        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        return new ChildProcess(Process.Start(info) ?? throw new InvalidOperationException("the child did not start"));
    }

    /// <summary>The next line the child prints, or a failure after <see cref="Timeout"/>.</summary>
    public async Task<string> ReadLineAsync()
    {
        using var cts = new CancellationTokenSource(Timeout);
        return await _process.StandardOutput.ReadLineAsync(cts.Token) ?? $"(end of output; stderr: {await _process.StandardError.ReadToEndAsync(cts.Token)})";
    }

    /// <summary>Waits (bounded) for the exit and returns the exit code and everything printed.</summary>
    public async Task<(int ExitCode, string Output)> WaitAsync()
    {
        using var cts = new CancellationTokenSource(Timeout);
        var stdout = _process.StandardOutput.ReadToEndAsync(cts.Token);
        var stderr = _process.StandardError.ReadToEndAsync(cts.Token);
        await _process.WaitForExitAsync(cts.Token);
        return (_process.ExitCode, (await stdout) + (await stderr));
    }

    /// <summary>Kills the child (SIGKILL) and waits until it is gone.</summary>
    public async Task KillAsync()
    {
        _process.Kill(entireProcessTree: true);
        using var cts = new CancellationTokenSource(Timeout);
        await _process.WaitForExitAsync(cts.Token);
    }

    /// <summary>
    /// Stops the child with SIGSTOP and returns once every thread of it is stopped (waitid with
    /// WSTOPPED|WNOWAIT: the kernel reports the group stop only when it is complete), so that
    /// nothing it was running can still answer. Linux only.
    /// </summary>
    public async Task StopAsync()
    {
        if (Interop.Libc.kill(_process.Id, Interop.Libc.SIGSTOP) != 0)
        {
            throw new InvalidOperationException($"kill(SIGSTOP) failed: errno {Marshal.GetLastPInvokeError()}");
        }

        int pid = _process.Id;
        await Task.Run(() =>
        {
            var info = new byte[128];
            while (Interop.Libc.waitid(Interop.Libc.P_PID, pid, info, Interop.Libc.WSTOPPED | Interop.Libc.WNOWAIT) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno != Interop.Libc.EINTR)
                {
                    throw new InvalidOperationException($"waitid(WSTOPPED) failed: errno {errno}");
                }
            }
        }).WaitAsync(Timeout);
    }

    /// <summary>Sends SIGTERM (what service managers send to stop a process).</summary>
    public void Terminate() => Interop.Libc.kill(_process.Id, Interop.Libc.SIGTERM);

    /// <summary>Continues a child stopped by <see cref="StopAsync"/> (SIGCONT).</summary>
    public void Continue() => Interop.Libc.kill(_process.Id, Interop.Libc.SIGCONT);

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        _process.Dispose();
    }

    /// <summary>The dotnet host of the running runtime (…/dotnet/shared/Microsoft.NETCore.App/x.y.z/ → …/dotnet/dotnet).</summary>
    internal static string DotnetHost()
    {
        var runtimeDir = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
        var root = Path.GetFullPath(Path.Combine(runtimeDir, "..", "..", ".."));
        var host = Path.Combine(root, OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet");
        return File.Exists(host) ? host : "dotnet";
    }
}
