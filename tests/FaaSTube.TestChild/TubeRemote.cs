using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Threading.Channels;
using FaaSTube.Channels;

/// <summary>
/// "tube-remote &lt;address&gt; &lt;workflow&gt;": a remote client (a <c>ucx://host:port</c> address) for
/// the tests across network namespaces (tests/FaaSTube.Tests/Channels/RemoteNamespaceTests.cs), run
/// inside the peer namespace. The workflow's secret comes from the environment
/// (FAASTUBE_REMOTE_SECRET, hex), never from the command line, which other users can read. UCX's
/// transport and device come from UCX_TLS and UCX_NET_DEVICES. Prints "connected SESSION", or
/// "refused ERROR" and exits 4; then runs one command per stdin line, in order, and answers each:
/// <list type="bullet">
/// <item>"put SIZE SEED": Puts SIZE bytes of <c>new Random(SEED)</c>; "id ID SHA256".</item>
/// <item>"named NAME SIZE SEED": a named Put of the same; "named VERSION SHA256".</item>
/// <item>"get ID SIZE": a Get to host memory of up to SIZE bytes; "got LENGTH SHA256".</item>
/// <item>"get-named NAME SIZE": a named Get to host memory of up to SIZE bytes; "got LENGTH SHA256".</item>
/// <item>"get-loop ID SIZE": Get to host memory over and over (the datum kept until deleted), "got N"
/// after each, until the process is killed or a call fails ("failed ERROR MS").</item>
/// <item>"put-loop SIZE SEED": Put and Delete SIZE bytes over and over, "put N" after each, until
/// the process is killed or a call fails ("failed ERROR MS").</item>
/// <item>"hold SIZE": opens a Put writer of SIZE bytes, writes and flushes its first two window's
/// worth, prints "holding", and waits (the test kills it mid-Put).</item>
/// </list>
/// "put", "named", "get" and "get-named" with "-timed" after their name ("put-timed ...") add the
/// call's own milliseconds (not the data's making or checksum) at the end of their answer.
/// A failed call prints "failed ERROR MS" (ERROR: the TubeError, or NodeUnavailable). When stdin
/// closes (the test is gone) it exits at once, whatever is pending.
/// </summary>
internal static class TubeRemote
{
    public static async Task<int> RunAsync(string[] args)
    {
        var commands = StdinCommands.Start();

        string secret = Environment.GetEnvironmentVariable("FAASTUBE_REMOTE_SECRET") ?? "";
        TubeClient client;
        try
        {
            client = await TubeClient.ConnectAsync(new TubeClientOptions
            {
                Address = args[1],
                Workflow = args[2],
                Function = "tube-remote",
                RemoteSecret = Convert.FromHexString(secret),
                WindowBytes = 4 << 20,
                UcxSettings = new Dictionary<string, string> { ["TLS"] = "tcp" }, // NET_DEVICES from UCX_NET_DEVICES
                CallTimeout = TimeSpan.FromSeconds(30),
            });
        }
        catch (Exception e) when (e is TubeException or TubeNodeUnavailableException)
        {
            Say($"refused {Name(e)} {e.Message}");
            return 4;
        }

        await using (client)
        {
            Say($"connected {client.SessionId}");
            await foreach (var line in commands.ReadAllAsync())
            {
                var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                bool timed = words[0].EndsWith("-timed", StringComparison.Ordinal);
                words[0] = timed ? words[0][..^"-timed".Length] : words[0];
                string Ms(long ms) => timed ? $" {ms}" : "";
                long Word(int i) => long.Parse(words[i], CultureInfo.InvariantCulture);
                var clock = Stopwatch.StartNew();
                try
                {
                    switch (words[0])
                    {
                        case "put":
                        {
                            byte[] data = Data(Word(1), Word(2));
                            clock.Restart();
                            var id = await client.PutAsync(data);
                            long ms = clock.ElapsedMilliseconds;
                            Say($"id {id} {Checksum(data)}{Ms(ms)}");
                            break;
                        }

                        case "named":
                        {
                            byte[] data = Data(Word(2), Word(3));
                            clock.Restart();
                            long version = await client.PutNamedAsync(words[1], data);
                            long ms = clock.ElapsedMilliseconds;
                            Say($"named {version} {Checksum(data)}{Ms(ms)}");
                            break;
                        }

                        case "get":
                        {
                            var buffer = new byte[Word(2)];
                            clock.Restart();
                            long length = await client.GetAsync(TubeId.Parse(words[1]), buffer);
                            long ms = clock.ElapsedMilliseconds;
                            Say($"got {length} {Checksum(buffer.AsSpan(0, (int)length))}{Ms(ms)}");
                            break;
                        }

                        case "get-named":
                        {
                            var buffer = new byte[Word(2)];
                            clock.Restart();
                            long length = await client.GetNamedAsync(words[1], buffer);
                            long ms = clock.ElapsedMilliseconds;
                            Say($"got {length} {Checksum(buffer.AsSpan(0, (int)length))}{Ms(ms)}");
                            break;
                        }

                        case "get-loop":
                        {
                            var buffer = new byte[Word(2)];
                            for (long n = 1; ; n++)
                            {
                                await client.GetAsync(TubeId.Parse(words[1]), buffer);
                                Say($"got {n}");
                            }
                        }

                        case "put-loop":
                        {
                            byte[] data = Data(Word(1), Word(2));
                            for (long n = 1; ; n++)
                            {
                                var id = await client.PutAsync(data, new PutOptions { KeepUntilDeleted = true });
                                await client.DeleteAsync(id);
                                Say($"put {n}");
                            }
                        }

                        case "hold":
                        {
                            var writer = await client.CreatePutWriterAsync(Word(1));
                            var random = new Random(1);
                            for (int i = 0; i < 2; i++)
                            {
                                var slot = writer.GetMemory();
                                random.NextBytes(slot.Span);
                                writer.Advance(slot.Length);
                                await writer.FlushAsync();
                            }

                            Say("holding");
                            await Task.Delay(Timeout.Infinite); // killed by the test
                            break;
                        }

                        default:
                            Say($"unknown command {words[0]}");
                            return 2;
                    }
                }
                catch (Exception e) when (e is TubeException or TubeNodeUnavailableException)
                {
                    Say($"failed {Name(e)} {clock.ElapsedMilliseconds}");
                }
            }
        }

        return 0;
    }

    private static string Name(Exception e) => e is TubeException t ? t.Error.ToString() : "NodeUnavailable";

    private static byte[] Data(long size, long seed)
    {
        var data = new byte[size];
        new Random((int)seed).NextBytes(data);
        return data;
    }

    private static string Checksum(ReadOnlySpan<byte> data) => Convert.ToHexString(SHA256.HashData(data));

    private static void Say(string line)
    {
        Console.WriteLine(line);
        Console.Out.Flush();
    }
}
