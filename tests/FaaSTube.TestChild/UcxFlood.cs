using System.Diagnostics;
using System.Globalization;
using System.Net;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Channels.Remote;
using FaaSTube.Memory;
using FaaSTube.Native;
using FaaSTube.Native.Ucx;

/// <summary>
/// "ucx-flood &lt;host&gt; &lt;port&gt; &lt;when&gt; &lt;bytes&gt; &lt;connections&gt; &lt;rounds&gt;": the attacker of
/// tests/FaaSTube.Tests/Channels/GatewayMemoryTests.cs. Each round it opens CONNECTIONS connections at
/// once to the node's listener with valid connect tickets (the workflow's secret from
/// FAASTUBE_REMOTE_SECRET, hex) and sends on each one active message carrying BYTES of data, eager
/// (UCP_AM_SEND_FLAG_EAGER; run it with UCX_RNDV_THRESH=inf too), so the receiving UCX reassembles
/// the whole message in memory it allocates before any handler sees it. WHEN is "before": the message
/// is a Hello with data, sent once the challenge came (no proof); or "after": a Sync request with data,
/// sent once the Hello with its valid proof was answered. Each connection then waits (at most 25 s)
/// for the node to close it, which it must: the message breaks the rules. The data is native memory
/// never written, so the attacker's own memory stays small. Prints "round R sent S failed F MS" per
/// round ("round R unfinished MS" for one not done in 30 s), then "done". UCX may abort this process on the way; the test does not mind.
/// </summary>
internal static class UcxFlood
{
    /// <summary>The longest one step of a connection waits (connect, challenge, answer, send, the node's close).</summary>
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(25);

    /// <summary>The longest a round waits for its connections; then it is reported unfinished.</summary>
    private static readonly TimeSpan RoundPatience = TimeSpan.FromSeconds(30);

    public static async Task<int> RunAsync(string[] args)
    {
        var at = new IPEndPoint(IPAddress.Parse(args[1]), int.Parse(args[2], CultureInfo.InvariantCulture));
        bool afterProof = args[3] switch
        {
            "before" => false,
            "after" => true,
            _ => throw new ArgumentException($"WHEN is before or after, not {args[3]}"),
        };
        int bytes = int.Parse(args[4], CultureInfo.InvariantCulture);
        int connections = int.Parse(args[5], CultureInfo.InvariantCulture);
        int rounds = int.Parse(args[6], CultureInfo.InvariantCulture);
        byte[] secret = Convert.FromHexString(Environment.GetEnvironmentVariable("FAASTUBE_REMOTE_SECRET") ?? "");
        var settings = new Dictionary<string, string>(UcxContext.LoopbackTcp) { ["RNDV_THRESH"] = "inf" };
        using var data = new NativeMemoryManager(bytes); // never written: its pages are the kernel's zero page until read
        for (int round = 0; round < rounds; round++)
        {
            var clock = Stopwatch.StartNew();
            var flood = Task.WhenAll(Enumerable.Range(0, connections).Select(_ => Task.Run(() => FloodOnceAsync(at, settings, secret, afterProof, data.Memory))));
            if (await Task.WhenAny(flood, Task.Delay(RoundPatience)) != flood)
            {
                Console.WriteLine($"round {round} unfinished after {clock.ElapsedMilliseconds}");
                continue; // what hangs here is UCX in this process: the next round goes on without it
            }

            var outcomes = await flood;
            Console.WriteLine($"round {round} sent {outcomes.Count(o => o)} failed {outcomes.Count(o => !o)} {clock.ElapsedMilliseconds}");
        }

        Console.WriteLine("done");
        Console.Out.Flush();
        Environment.Exit(0); // a connection still stuck in UCX does not keep the process
        return 0;
    }

    /// <summary>One connection, one oversized message; true when UCX sent all of it.</summary>
    private static async Task<bool> FloodOnceAsync(IPEndPoint at, Dictionary<string, string> settings, byte[] secret, bool afterProof, ReadOnlyMemory<byte> data)
    {
        using var context = UcxContext.CreateForActiveMessages(settings);
        var worker = UcxWorker.Create(context, "flood", RemoteWire.NewTicket(secret, TimeProvider.System));
        var node = new NodeMessages();
        UcxEndpoint? endpoint = null;
        try
        {
            await worker.SetMessageHandlerAsync((uint)RemoteMessage.Challenge, node);
            await worker.SetMessageHandlerAsync((uint)RemoteMessage.Answer, node);
            endpoint = await UcxEndpoint.ConnectAsync(worker, at, sendClientId: true).WaitAsync(Patience);
            var (_, nonce, _, _) = RemoteWire.ReadChallenge(await node.Challenge.Task.WaitAsync(Patience));
            uint id = (uint)RemoteMessage.Hello;
            byte[] header;
            if (afterProof)
            {
                var hello = new Hello(Frames.Version, "wf", "flood", 64 << 10, 0);
                var payload = Payload.Writer(hello);
                payload.Bytes(RemoteWire.Proof(secret, nonce, hello.Workflow, hello.Function));
                await endpoint.SendMessageAsync(id, Frames.Encode(FrameType.Hello, 1, payload.Memory.Span), reply: true).WaitAsync(Patience);
                var (type, _, _) = RemoteWire.ReadFrame(await node.Answer.Task.WaitAsync(Patience));
                if (type != FrameType.Ok)
                {
                    throw new InvalidOperationException($"The node answered the Hello with {type}.");
                }

                id = (uint)RemoteMessage.Request;
                header = Frames.Encode(FrameType.Sync, 2, TraceContext.BeginPayload().Memory.Span);
            }
            else
            {
                header = Frames.Encode(FrameType.Hello, 1, Payload.Writer(new Hello(Frames.Version, "wf", "flood", 64 << 10, 0)).Memory.Span);
            }

            bool sent = true;
            try
            {
                await endpoint.SendMessageAsync(id, header, data, reply: true, mode: UcxSendMode.Eager).WaitAsync(Patience);
            }
            catch (Exception e) when (e is UcxException or ObjectDisposedException or TimeoutException)
            {
                sent = false; // the node closed the connection before all of it went
            }

            await ((Task)endpoint.Failed.WaitAsync(Patience)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing); // the node closes it
            return sent;
        }
        catch (Exception e) when (e is UcxException or ObjectDisposedException or TimeoutException or InvalidOperationException or InvalidDataException)
        {
            Console.Error.WriteLine($"flood connection: {e.GetType().Name}: {e.Message}");
            return false;
        }
        finally
        {
            if (endpoint is not null)
            {
                await endpoint.CloseAsync(force: true).WaitAsync(Patience).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }

            worker.Dispose();
        }
    }

    /// <summary>The node's challenge and its first answer.</summary>
    private sealed class NodeMessages : IUcxMessageHandler
    {
        public TaskCompletionSource<byte[]> Challenge { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource<byte[]> Answer { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void OnMessage(UcxWorker worker, in UcxActiveMessage message)
        {
            if (message.Id == (uint)RemoteMessage.Challenge)
            {
                Challenge.TrySetResult(message.Header.ToArray());
            }
            else if (message.Id == (uint)RemoteMessage.Answer)
            {
                Answer.TrySetResult(message.Header.ToArray());
            }
        }
    }
}
