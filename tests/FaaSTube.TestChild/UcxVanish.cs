using System.Diagnostics;
using System.Globalization;
using System.Net;
using FaaSTube.Channels.Remote;
using FaaSTube.Native.Ucx;

/// <summary>
/// "ucx-vanish &lt;host&gt; &lt;port&gt; &lt;count&gt; &lt;seed&gt;": the attacker of
/// tests/FaaSTube.Tests/Channels/GatewayTests.cs. COUNT times it connects to the node's listener with a
/// valid connect ticket (the workflow's secret from FAASTUBE_REMOTE_SECRET, hex) and destroys its
/// worker at a random moment 0-30 ms later without closing anything, as a killed process would: its
/// sockets close while the listener's side is still wiring the connection up. Prints "done COUNT".
/// UCX may abort this process on the way; the test does not mind.
/// </summary>
internal static class UcxVanish
{
    public static async Task<int> RunAsync(string[] args)
    {
        var at = new IPEndPoint(IPAddress.Parse(args[1]), int.Parse(args[2], CultureInfo.InvariantCulture));
        int count = int.Parse(args[3], CultureInfo.InvariantCulture);
        var random = new Random(int.Parse(args[4], CultureInfo.InvariantCulture));
        byte[] secret = Convert.FromHexString(Environment.GetEnvironmentVariable("FAASTUBE_REMOTE_SECRET") ?? "");
        for (int i = 0; i < count; i++)
        {
            var context = UcxContext.Create(UcxContext.LoopbackTcp);
            var worker = UcxWorker.Create(context, "vanishing", RemoteWire.NewTicket(secret, TimeProvider.System));
            var connect = UcxEndpoint.ConnectAsync(worker, at, sendClientId: true);
            int delay = random.Next(0, 30);
            var spin = Stopwatch.StartNew();
            while (spin.Elapsed.TotalMilliseconds < delay)
            {
                Thread.SpinWait(100);
            }

            worker.Dispose();
            context.Dispose();
            try
            {
                await connect.WaitAsync(TimeSpan.FromSeconds(10));
            }
            catch (Exception)
            {
                // Its worker is gone: the connect fails, as it should.
            }
        }

        Console.WriteLine($"done {count}");
        return 0;
    }
}
