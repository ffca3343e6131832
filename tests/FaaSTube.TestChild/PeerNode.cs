using System.Globalization;
using System.Security.Cryptography;
using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Kernels;

/// <summary>
/// "peer-node &lt;listen host:port&gt; &lt;peer ucx://host:port&gt; &lt;workflow&gt;": a second node, run
/// in the peer network namespace for tests/FaaSTube.Tests/Channels/PeerNamespaceTests.cs. It is node 2,
/// with node 1 (the test's, in the root namespace) its peer; the workflow's secret comes from
/// FAASTUBE_REMOTE_SECRET (hex), UCX's device from UCX_NET_DEVICES. Its network side runs in its own
/// process (NetworkIsolation.InProcess: this child is the process that may fall). Prints
/// "ready", then per stdin line:
/// <list type="bullet">
/// <item>"get ID SIZE": a local client of node 2 Gets ID on GPU 0 (node 2 fetches it from node 1),
/// checksums it there, then reads it to host memory: "got LENGTH CHECKSUM SHA256 PATH".</item>
/// <item>"named NAME SIZE": the same for a name: "named LENGTH SHA256".</item>
/// </list>
/// A failed call prints "failed ERROR MESSAGE". Exits when stdin closes.
/// </summary>
internal static class PeerNode
{
    public static async Task<int> RunAsync(string[] args)
    {
        var commands = StdinCommands.Start();
        byte[] secret = Convert.FromHexString(Environment.GetEnvironmentVariable("FAASTUBE_REMOTE_SECRET") ?? "");
        var ucx = new Dictionary<string, string> { ["TLS"] = "tcp", ["NET_DEVICES"] = Environment.GetEnvironmentVariable("UCX_NET_DEVICES") ?? "all" };
        await using var node = await TubeNode.StartAsync(new TubeNodeOptions
        {
            SocketPath = null,
            NodeNumber = 2,
            PeerNodes = new Dictionary<int, string> { [1] = args[2] },
            NetworkListen = args[1],
            NetworkIsolation = NetworkIsolation.InProcess,
            RemoteSecrets = new Dictionary<string, byte[]> { [args[3]] = secret },
            UcxSettings = ucx,
            Gpus = new GpuSystemOptions { Backend = GpuBackend.Simulated },
            SweepInterval = null,
        });
        await using var client = await TubeClient.ConnectInProcessAsync(node, new TubeClientOptions { Workflow = args[3], Function = "peer-node", WindowBytes = 16 << 20 });
        Say("ready");
        await foreach (var line in commands.ReadAllAsync())
        {
            var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            try
            {
                switch (words[0])
                {
                    case "get":
                    {
                        var id = TubeId.Parse(words[1]);
                        ulong checksum;
                        TubePath path;
                        await using (var buffer = await client.GetAsync(id))
                        {
                            using var stream = buffer.Device.CreateStream();
                            checksum = await stream.ChecksumAsync(buffer.Memory);
                            path = buffer.Path;
                        }

                        var back = new byte[long.Parse(words[2], CultureInfo.InvariantCulture)];
                        long length = await client.GetAsync(id, back);
                        Say($"got {length} {checksum} {Convert.ToHexString(SHA256.HashData(back.AsSpan(0, (int)length)))} {path}");
                        break;
                    }

                    case "named":
                    {
                        var back = new byte[long.Parse(words[2], CultureInfo.InvariantCulture)];
                        long length = await client.GetNamedAsync(words[1], back);
                        Say($"named {length} {Convert.ToHexString(SHA256.HashData(back.AsSpan(0, (int)length)))}");
                        break;
                    }

                    default:
                        Say($"unknown command {words[0]}");
                        return 2;
                }
            }
            catch (TubeException e)
            {
                Say($"failed {e.Error} {e.Message}");
            }
        }

        return 0;
    }

    private static void Say(string line)
    {
        Console.Out.WriteLine(line);
        Console.Out.Flush();
    }
}
