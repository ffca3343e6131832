using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Threading.Channels;
using FaaSTube.Native;
using FaaSTube.Native.Ucx;

/// <summary>
/// "ucx-peer &lt;host&gt; &lt;port&gt;": the far side of the UCX tests across network namespaces
/// (tests/FaaSTube.Tests/Native/UcxNamespaceTests.cs), run inside the peer namespace. Connects to
/// the listener at host:port over UCX with TLS=tcp (the rest of UCX's configuration from its UCX_*
/// environment), prints "connected", then runs one command per stdin line, in order:
/// <list type="bullet">
/// <item>"echo SIZE TAG": receives up to SIZE bytes under TAG from the listener's side, prints
/// "got LENGTH SHA256", sends them back under TAG+1, prints "sent".</item>
/// <item>"send SIZE SEED TAG": sends SIZE bytes of <c>new Random(SEED)</c> under TAG, prints "sending"
/// first, then "sent MS" or "failed STATUS MS".</item>
/// <item>"recv SIZE TAG": posts a receive, prints "posted", then "got LENGTH SHA256" or "failed STATUS MS".</item>
/// </list>
/// When stdin closes (the test, or the process that ran it, is gone) it exits at once, whatever is pending.
/// </summary>
internal static class UcxPeer
{
    public static async Task<int> RunAsync(string[] args)
    {
        var commands = StdinCommands.Start();

        var remote = new IPEndPoint(IPAddress.Parse(args[1]), int.Parse(args[2], CultureInfo.InvariantCulture));
        using var context = UcxContext.Create(UcxContext.TcpOnly);
        using var worker = UcxWorker.Create(context, "ucx-peer");
        var endpoint = await UcxEndpoint.ConnectAsync(worker, remote);
        Say("connected");

        await foreach (var line in commands.ReadAllAsync())
        {
            var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            long Word(int i) => long.Parse(words[i], CultureInfo.InvariantCulture);
            var clock = Stopwatch.StartNew();
            try
            {
                switch (words[0])
                {
                    case "echo":
                    {
                        var buffer = new byte[Word(1)];
                        ulong tag = (ulong)Word(2);
                        var message = await endpoint.ReceiveAsync(buffer, tag);
                        Say($"got {message.Length} {Checksum(buffer.AsSpan(0, (int)message.Length))}");
                        await endpoint.SendAsync(buffer.AsMemory(0, (int)message.Length), tag + 1);
                        Say("sent");
                        break;
                    }

                    case "send":
                    {
                        var data = new byte[Word(1)];
                        new Random((int)Word(2)).NextBytes(data);
                        Say("sending");
                        await endpoint.SendAsync(data, (ulong)Word(3));
                        Say($"sent {clock.ElapsedMilliseconds}");
                        break;
                    }

                    case "recv":
                    {
                        var buffer = new byte[Word(1)];
                        var receive = endpoint.ReceiveAsync(buffer, (ulong)Word(2));
                        Say("posted");
                        var message = await receive;
                        Say($"got {message.Length} {Checksum(buffer.AsSpan(0, (int)message.Length))}");
                        break;
                    }

                    default:
                        Say($"unknown command {words[0]}");
                        return 2;
                }
            }
            catch (Exception e)
            {
                Say($"failed {(e is UcxException u ? u.StatusName : e.GetType().Name)} {clock.ElapsedMilliseconds}");
            }
        }

        return 0;
    }

    private static string Checksum(ReadOnlySpan<byte> data) => Convert.ToHexString(SHA256.HashData(data));

    private static void Say(string line)
    {
        Console.WriteLine(line);
        Console.Out.Flush();
    }
}
