using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using FaaSTube.Channels;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Channels.Remote;
using FaaSTube.Native;
using FaaSTube.Native.Ucx;

/// <summary>
/// "ucx-attack &lt;host&gt; &lt;port&gt; &lt;scenario&gt;": a hostile remote peer for
/// tests/FaaSTube.Tests/Channels/GatewayHostileTests.cs, in a process of its own so that UCX runs
/// on the attacker's side here, never in the test process. It speaks the remote wire by hand
/// (docs/protocol.md, Remote clients) as workflow "wf" with the secret in FAASTUBE_REMOTE_SECRET
/// (hex), breaks one rule (the scenario), and reports what the node did, one line each:
/// "challenge CREDITS MAXBYTES", "hello ok SESSION" or "hello error CODE", "answer ok ID" or
/// "answer error ID CODE MESSAGE", then "closed MS" (its endpoint failed or was closed by the node,
/// MS after the offence) or "open" (it still got an answer to a Sync after the offence), and exits 0.
/// "rejected MS STATUS" when the listener turned its connection down (no challenge came). UCX's transport
/// and device come from UCX_TLS and UCX_NET_DEVICES.
/// </summary>
internal static class UcxAttack
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    /// <summary>The scenarios after which the session must still be open (a refusal, not a broken rule).</summary>
    private static readonly HashSet<string> Refusals = ["oversize-put", "whole-get-outside-window", "device-get", "allocate", "status", "gateway-hello-frame", "unknown-type", "get-outside-window", "put-part-unknown-id"];

    public static async Task<int> RunAsync(string[] args)
    {
        var at = new IPEndPoint(IPAddress.Parse(args[1]), int.Parse(args[2], CultureInfo.InvariantCulture));
        string scenario = args[3];
        byte[] secret = Convert.FromHexString(Environment.GetEnvironmentVariable("FAASTUBE_REMOTE_SECRET") ?? "");
        byte[] wrongSecret = Encoding.UTF8.GetBytes("not the secret of workflow wf!!!");
        var settings = new Dictionary<string, string> { ["TLS"] = "tcp" };
        if (scenario.StartsWith("flood", StringComparison.Ordinal))
        {
            settings["RNDV_THRESH"] = scenario.Contains("eager", StringComparison.Ordinal) ? "inf" : "8k";
        }

        byte[] flood = [];
        if (scenario.StartsWith("flood", StringComparison.Ordinal))
        {
            // Made (and touched) before connecting: the handshake's deadline runs from the accept.
            flood = new byte[scenario is "flood-am-rndv" or "flood-am-eager-fragments" ? 256 << 20 : scenario == "flood-am-eager" ? 4 << 10 : 64 << 10];
            Random.Shared.NextBytes(flood);
        }

        ulong ticket = scenario switch
        {
            "no-ticket" => 0,
            "wrong-ticket" => RemoteWire.NewTicket(wrongSecret, TimeProvider.System),
            _ => RemoteWire.NewTicket(secret, TimeProvider.System),
        };

        if (scenario == "replayed-ticket")
        {
            // A ticket seen on the wire, used again after its client connected with it.
            await using (var first = await Peer.ConnectAsync(at, settings, ticket))
            {
                var challenge = await first.ChallengeAsync();
                Say($"first {await first.HelloAsync(secret, challenge.Nonce, 1 << 20)}");
            }

            await using var again = await Peer.ConnectAsync(at, settings, ticket);
            await again.ExpectRejectedAsync();
            return 0;
        }

        await using var peer = await Peer.ConnectAsync(at, settings, ticket);
        if (scenario is "no-ticket" or "wrong-ticket")
        {
            await peer.ExpectRejectedAsync();
            return 0;
        }

        var challenged = Stopwatch.StartNew();
        if (await Task.WhenAny(peer.Endpoint.Failed, peer.Challenged) == peer.Endpoint.Failed)
        {
            Say($"rejected {challenged.ElapsedMilliseconds} {(peer.Endpoint.Failed.Result is UcxException u ? u.StatusName : peer.Endpoint.Failed.Result.GetType().Name)}");
            return 0;
        }

        var (nonce, credits, maxBytes) = await peer.ChallengeAsync();
        Say($"challenge {credits} {maxBytes}");
        var clock = Stopwatch.StartNew();
        var hello = Payload.Writer(new Hello(Frames.Version, "wf", "attacker", 1 << 20, 0)).Bytes(RemoteWire.Proof(secret, nonce, "wf", "attacker")).Memory;
        switch (scenario)
        {
            // The handshake's games: each closes the session (a Hello refused is answered first).
            case "silent":
                break;
            case "request-before-hello":
                await peer.SendAsync(RemoteMessage.Request, Request(FrameType.Sync, 1, default(Sync)));
                break;
            case "pong-before-hello":
                await peer.SendAsync(RemoteMessage.Pong, []);
                break;
            case "hello-with-data":
                await peer.SendAsync(RemoteMessage.Hello, Frames.Encode(FrameType.Hello, 1, hello.Span), new byte[64 << 10]);
                break;
            case "big-hello":
                await peer.SendAsync(RemoteMessage.Hello, Frames.Encode(FrameType.Hello, 1, new byte[6 << 10]));
                break;
            case "garbage-hello":
                await peer.SendAsync(RemoteMessage.Hello, RandomNumberGenerator.GetBytes(200));
                break;
            case "two-hellos":
                await peer.SendAsync(RemoteMessage.Hello, Frames.Encode(FrameType.Hello, 1, hello.Span));
                await peer.SendAsync(RemoteMessage.Hello, Frames.Encode(FrameType.Hello, 2, hello.Span));
                break;
            case "wrong-proof":
                Say($"hello {await peer.HelloAsync(wrongSecret, nonce, 1 << 20)}");
                break;
            case "other-workflow":
            {
                var other = Payload.Writer(new Hello(Frames.Version, "other", "attacker", 1 << 20, 0)).Bytes(RemoteWire.Proof(secret, nonce, "other", "attacker")).Memory;
                Say($"hello {await peer.HelloRawAsync(other)}");
                break;
            }

            case "huge-window":
                Say($"hello {await peer.HelloAsync(secret, nonce, 1L << 40)}");
                break;
            case "tiny-window":
                Say($"hello {await peer.HelloAsync(secret, nonce, 4096)}");
                break;
            case "flood-tag-eager":
            case "flood-am-eager":
            case "flood-am-rndv":
            case "flood-am-eager-fragments":
                await peer.FloodAsync(scenario, flood);
                break;
            default:
                string answer = await peer.HelloAsync(secret, nonce, 1 << 20);
                Say($"hello {answer}");
                if (!answer.StartsWith("ok ", StringComparison.Ordinal))
                {
                    return 3;
                }

                clock.Restart();
                await OffendAsync(peer, scenario, credits);
                break;
        }

        if (Refusals.Contains(scenario))
        {
            Say(await peer.SyncAsync(0x7777) ? "open" : $"closed {clock.ElapsedMilliseconds}");
        }
        else
        {
            var closed = await Task.WhenAny(peer.Endpoint.Failed, Task.Delay(Bound));
            Say(closed == peer.Endpoint.Failed ? $"closed {clock.ElapsedMilliseconds}" : "still open");
        }

        return 0;
    }

    /// <summary>What an authenticated peer does wrong (or asks for that it may not have).</summary>
    private static async Task OffendAsync(Peer peer, string scenario, int credits)
    {
        switch (scenario)
        {
            case "oversize-frame":
                await peer.SendAsync(RemoteMessage.Request, Frames.Encode(FrameType.Sync, 10, new byte[6 << 10]));
                break;
            case "data-with-sync":
                await peer.SendAsync(RemoteMessage.Request, Request(FrameType.Sync, 10, default(Sync)), new byte[1 << 20]);
                break;
            case "garbage-frame":
                await peer.SendAsync(RemoteMessage.Request, RandomNumberGenerator.GetBytes(300));
                break;
            case "hello-after-open":
                await peer.SendAsync(RemoteMessage.Hello, Request(FrameType.Sync, 10, default(Sync)));
                break;
            case "pong-with-data":
                await peer.SendAsync(RemoteMessage.Pong, [], new byte[100]);
                break;
            case "credit-abuse":
            {
                // Fifty times its credits at once, never waiting for an answer.
                var sends = new List<Task>();
                for (int i = 0; i < 50 * credits; i++)
                {
                    sends.Add(peer.SendAsync(RemoteMessage.Request, Request(FrameType.Where, (uint)(100 + i), new Where(TubeId.NewId()))));
                }

                await Task.WhenAll(sends).WaitAsync(Bound).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                break;
            }

            case "part-outside-window":
            case "part-longer-than-its-data":
            case "part-negative-offset":
            {
                var id = await peer.PutBeginAsync(1 << 20);
                var (offset, length, data) = scenario switch
                {
                    "part-outside-window" => ((1 << 20) - 100, 4096, 4096),
                    "part-longer-than-its-data" => (0, 8192, 4096),
                    _ => (-4096, 4096, 4096),
                };
                await peer.SendAsync(RemoteMessage.Request, Request(FrameType.PutPart, 20, new PutPart(id, 0, offset, length, "", 0)), new byte[data]);
                break;
            }

            case "whole-put-outside-window":
                await peer.SendAsync(RemoteMessage.Request, Request(FrameType.PutWhole, 20, new PutWhole(4096, 0, (1 << 20) - 100, 0, 1, 0, false)), new byte[4096]);
                break;
            case "whole-put-longer-than-its-data":
                await peer.SendAsync(RemoteMessage.Request, Request(FrameType.PutWhole, 20, new PutWhole(8192, 0, 0, 0, 1, 0, false)), new byte[4096]);
                break;
            case "whole-get-with-data":
                await peer.SendAsync(RemoteMessage.Request, Request(FrameType.GetWhole, 20, new GetWhole(TubeId.NewId(), 0, 4096, 0)), new byte[4096]);
                break;
            case "whole-get-outside-window":
            {
                // A refused GetWhole takes no lease: the data's one consumer is still to come, and a GetWhole in range gets it.
                var id = await peer.PutBeginAsync(2048);
                await peer.CallAsync(66, FrameType.PutPart, new PutPart(id, 0, 0, 2048, "", 0), new byte[2048]);
                await peer.CallAsync(67, FrameType.PutCommit, new PutCommit(id, 1, 0, false));
                string outside = await peer.CallAsync(64, FrameType.GetWhole, new GetWhole(id, (1 << 20) - 1024, 2048, 0));
                string inside = await peer.CallAsync(65, FrameType.GetWhole, new GetWhole(id, 4096, 2048, 0)); // its bytes come with the answer (eager); the consumer is done, the data gone
                if (!outside.StartsWith("error BadRequest", StringComparison.Ordinal) || !inside.StartsWith("ok", StringComparison.Ordinal))
                {
                    Say($"unexpected: the GetWhole outside the window said '{outside}', the one inside '{inside}'");
                    Environment.Exit(3);
                }

                await peer.CallAsync(62, FrameType.PutWhole, new PutWhole(4096, 0, 0, 0, 0, 0, false), new byte[4096]); // no consumer: refused after its copy, and dropped
                break;
            }

            case "oversize-put":
                await peer.CallAsync(30, FrameType.PutBegin, new PutBegin(1L << 40, 0));
                await peer.CallAsync(31, FrameType.PutBegin, new PutBegin(-1, 0));
                break;
            case "put-part-unknown-id":
                await peer.CallAsync(32, FrameType.PutPart, new PutPart(TubeId.NewId(), 0, 0, 4096, "", 0), new byte[4096]);
                break;
            case "get-outside-window":
            {
                var id = await peer.PutBeginAsync(8192);
                await peer.CallAsync(33, FrameType.PutPart, new PutPart(id, 0, 0, 8192, "", 0), new byte[8192]);
                await peer.CallAsync(34, FrameType.PutCommit, new PutCommit(id, 1, 0, false));
                await peer.CallAsync(35, FrameType.Get, new Get(id, -1, 0));
                await peer.CallAsync(36, FrameType.GetToHost, new GetToHost(id, 0, (1 << 20) - 4096, 8192));
                await peer.CallAsync(37, FrameType.GetToHost, new GetToHost(id, 0, int.MaxValue - 10, 8192));
                await peer.CallAsync(38, FrameType.Release, new Release(id));
                break;
            }

            case "device-get":
            {
                var id = await peer.PutBeginAsync(8192);
                await peer.CallAsync(40, FrameType.PutPart, new PutPart(id, 0, 0, 8192, "", 0), new byte[8192]);
                await peer.CallAsync(41, FrameType.PutCommit, new PutCommit(id, 1, 0, false));
                await peer.CallAsync(42, FrameType.Get, new Get(id, 0, 0));
                await peer.CallAsync(43, FrameType.Delete, new Delete(id));
                break;
            }

            case "allocate":
                await peer.CallAsync(50, FrameType.Allocate, new Allocate(4096, 0));
                break;
            case "status":
                await peer.CallAsync(51, FrameType.Status, new Status(Frames.Version, 10));
                break;
            case "gateway-hello-frame":
            {
                // The first frame of the gateway's own connection, from a remote client: with a key of the right length (not the node's).
                var payload = TraceContext.BeginPayload();
                payload.U16(Frames.Version).Bytes(new byte[GatewayHello.KeyBytes]).Str("wf").Str("f").I64(1 << 20);
                await peer.CallAsync(52, FrameType.GatewayHello, payload.Memory);
                var hello = TraceContext.BeginPayload();
                new Hello(Frames.Version, "other", "f", 1 << 20, 0).Write(hello);
                await peer.CallAsync(54, FrameType.Hello, hello.Memory); // a second Hello, as a request
                break;
            }

            case "unknown-type":
                await peer.CallAsync(53, (FrameType)77, TraceContext.BeginPayload().Memory);
                break;
            default:
                Say($"unknown scenario {scenario}");
                Environment.Exit(2);
                break;
        }
    }

    private static byte[] Request<T>(FrameType type, uint id, T request)
        where T : IPayload<T>
    {
        var payload = TraceContext.BeginPayload();
        request.Write(payload);
        return Frames.Encode(type, id, payload.Memory.Span);
    }

    private static void Say(string line)
    {
        Console.WriteLine(line);
        Console.Out.Flush();
    }

    /// <summary>One UCX worker and endpoint with the node; what the node sends it is reported.</summary>
    private sealed class Peer : IUcxMessageHandler, IAsyncDisposable
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<uint, TaskCompletionSource<(string Said, byte[] Payload)>> _answers = new();
        private readonly TaskCompletionSource<byte[]> _challenge = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private UcxContext _context = null!;
        private UcxWorker _worker = null!;

        public UcxEndpoint Endpoint { get; private set; } = null!;

        public static async Task<Peer> ConnectAsync(IPEndPoint at, IReadOnlyDictionary<string, string> settings, ulong ticket)
        {
            var peer = new Peer { _context = UcxContext.Create(settings) };
            peer._worker = UcxWorker.Create(peer._context, "attacker", ticket);
            await peer._worker.SetMessageHandlerAsync((uint)RemoteMessage.Challenge, peer);
            await peer._worker.SetMessageHandlerAsync((uint)RemoteMessage.Answer, peer);
            await peer._worker.SetMessageHandlerAsync((uint)RemoteMessage.Ping, peer);
            peer.Endpoint = await UcxEndpoint.ConnectAsync(peer._worker, at, sendClientId: ticket != 0);
            return peer;
        }

        public void OnMessage(UcxWorker worker, in UcxActiveMessage message)
        {
            if (message.Id == (uint)RemoteMessage.Challenge)
            {
                _challenge.TrySetResult(message.Header.ToArray());
                return;
            }

            if (message.Id != (uint)RemoteMessage.Answer)
            {
                return; // a Ping: this peer does not answer them
            }

            string said;
            uint id;
            byte[] payload = [];
            try
            {
                (var type, uint requestId, payload) = RemoteWire.ReadFrame(message.Header);
                id = requestId;
                if (type == FrameType.Error)
                {
                    var error = Payload.Read<Error>(payload);
                    said = $"error {error.Code} {error.Message}";
                }
                else
                {
                    said = type == FrameType.Ok ? "ok" : $"frame {type}";
                    if (requestId == 1 && type == FrameType.Ok)
                    {
                        said += $" {Payload.Read<HelloOk>(payload).SessionId}";
                    }
                }
            }
            catch (Exception e)
            {
                id = 0;
                said = $"unreadable {e.Message}";
            }

            Say($"answer {said.Split(' ')[0]} {id} {string.Join(' ', said.Split(' ').Skip(1))}".TrimEnd());
            _answers.GetOrAdd(id, _ => new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult((said, payload));
        }

        /// <summary>Completes when the node's challenge came.</summary>
        public Task Challenged => _challenge.Task;

        public async Task<(byte[] Nonce, int Credits, int MaxBytes)> ChallengeAsync()
        {
            var (_, nonce, credits, maxBytes) = RemoteWire.ReadChallenge(await _challenge.Task.WaitAsync(Bound));
            return (nonce, credits, maxBytes);
        }

        /// <summary>The listener must turn the connection down: no challenge, the endpoint fails.</summary>
        public async Task ExpectRejectedAsync()
        {
            var clock = Stopwatch.StartNew();
            var first = await Task.WhenAny(Endpoint.Failed, _challenge.Task, Task.Delay(Bound));
            Say(first == Endpoint.Failed ? $"rejected {clock.ElapsedMilliseconds} {(Endpoint.Failed.Result is UcxException u ? u.StatusName : Endpoint.Failed.Result.GetType().Name)}" : first == _challenge.Task ? "challenged" : "nothing");
        }

        public Task<string> HelloAsync(byte[] secret, byte[] nonce, long windowBytes) =>
            HelloRawAsync(Payload.Writer(new Hello(Frames.Version, "wf", "attacker", windowBytes, 0)).Bytes(RemoteWire.Proof(secret, nonce, "wf", "attacker")).Memory);

        public async Task<string> HelloRawAsync(ReadOnlyMemory<byte> payload)
        {
            var answer = Answer(1);
            await SendAsync(RemoteMessage.Hello, Frames.Encode(FrameType.Hello, 1, payload.Span));
            var done = await Task.WhenAny(answer, Endpoint.Failed, Task.Delay(Bound));
            return done == answer ? answer.Result.Said : "none";
        }

        public async Task<TubeId> PutBeginAsync(long length)
        {
            var payload = TraceContext.BeginPayload();
            new PutBegin(length, 0).Write(payload);
            var (said, answer) = await CallRawAsync(60, FrameType.PutBegin, payload.Memory, default);
            if (!said.StartsWith("ok", StringComparison.Ordinal))
            {
                Say($"PutBegin refused: {said}");
                Environment.Exit(3);
            }

            return Payload.Read<PutBeginOk>(answer).Id;
        }

        public async Task<string> CallAsync<T>(uint id, FrameType type, T request, ReadOnlyMemory<byte> data = default)
            where T : IPayload<T>
        {
            var payload = TraceContext.BeginPayload();
            request.Write(payload);
            return await CallAsync(id, type, payload.Memory, data);
        }

        public async Task<string> CallAsync(uint id, FrameType type, ReadOnlyMemory<byte> payload, ReadOnlyMemory<byte> data = default) =>
            (await CallRawAsync(id, type, payload, data)).Said;

        /// <summary>A request and its answer ("none" when the endpoint failed or nothing came within the bound).</summary>
        private async Task<(string Said, byte[] Payload)> CallRawAsync(uint id, FrameType type, ReadOnlyMemory<byte> payload, ReadOnlyMemory<byte> data)
        {
            var answer = Answer(id);
            await SendAsync(RemoteMessage.Request, Frames.Encode(type, id, payload.Span), data);
            var done = await Task.WhenAny(answer, Endpoint.Failed, Task.Delay(Bound));
            return done == answer ? answer.Result : ("none", []);
        }

        /// <summary>A Sync after the offence: true when the node answers it (the session goes on).</summary>
        public async Task<bool> SyncAsync(uint id)
        {
            var payload = TraceContext.BeginPayload();
            return (await CallAsync(id, FrameType.Sync, payload.Memory)).StartsWith("ok", StringComparison.Ordinal);
        }

        private Task<(string Said, byte[] Payload)> Answer(uint id) => _answers.GetOrAdd(id, _ => new(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

        public Task SendAsync(RemoteMessage kind, byte[] header, ReadOnlyMemory<byte> data = default, UcxSendMode mode = UcxSendMode.Auto) =>
            Endpoint.SendMessageAsync((uint)kind, header, data, reply: true, mode);

        /// <summary>256 MiB before any Hello: tagged messages (which the node's UCX drops: it has no tags), or active messages, eager or rendezvous.</summary>
        public async Task FloodAsync(string scenario, byte[] buffer)
        {
            bool tag = scenario.StartsWith("flood-tag", StringComparison.Ordinal);
            bool eager = scenario.Contains("eager", StringComparison.Ordinal);
            int size = buffer.Length;
            int count = (int)((256L << 20) / size);
            var sends = new List<Task>();
            for (int i = 0; i < count && Endpoint.Failure is null; i++)
            {
                sends.Add(tag
                    ? Endpoint.SendAsync(buffer, (ulong)i + 1)
                    : Endpoint.SendMessageAsync((uint)RemoteMessage.Request, Frames.Encode(FrameType.Sync, (uint)i + 1, new byte[16]), buffer, reply: true, mode: eager ? UcxSendMode.Eager : UcxSendMode.Rendezvous));
                if (sends.Count % 256 == 0)
                {
                    await Task.WhenAll(sends.Skip(sends.Count - 256)).WaitAsync(Bound).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                }
            }

            await Task.WhenAny(Task.WhenAll(sends), Task.Delay(TimeSpan.FromSeconds(2))); // what the node dropped may never complete here
            Say($"flooded {sends.Count} x {size}: {sends.Count(t => t.IsCompletedSuccessfully)} sent, {sends.Count(t => t.IsFaulted)} failed, {sends.Count(t => !t.IsCompleted)} pending");
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                await Endpoint.CloseAsync(force: true).WaitAsync(TimeSpan.FromSeconds(5));
            }
            catch (Exception)
            {
                // Already failed.
            }

            _worker.Dispose();
            _context.Dispose();
        }
    }
}
