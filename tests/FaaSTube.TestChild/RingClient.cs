using System.Globalization;
using System.Net.Sockets;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Transport;

/// <summary>
/// ring-client &lt;socket&gt; &lt;seed&gt; &lt;count&gt; &lt;capacity&gt;: the client's side of a control ring in a
/// process of its own. Creates the ring, connects to the test's Unix socket and sends a Hello frame
/// (payload: i64 ring bytes) with the descriptor attached (UnixRights.cs), then sends
/// <c>count</c> requests (PutBegin, ids 1..count, payloads from <see cref="NextPayload"/> with
/// <c>seed</c>) from one thread while the main thread takes the replies and checks each is Ok with
/// the same id and the request's payload reversed. Prints "ok &lt;count&gt;" and exits 0; 3 on a wrong reply.
/// </summary>
public static class RingClient
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>The next request payload: half of them short (0-255 bytes), half up to the ring's maximum.</summary>
    public static byte[] NextPayload(Random random, int maxPayload)
    {
        var payload = new byte[random.Next(2) == 0 ? random.Next(256) : random.Next(maxPayload + 1)];
        random.NextBytes(payload);
        return payload;
    }

    public static int Run(string[] args)
    {
        string socketPath = args[1];
        int seed = int.Parse(args[2], CultureInfo.InvariantCulture);
        int count = int.Parse(args[3], CultureInfo.InvariantCulture);
        using var ring = ControlRing.Create(int.Parse(args[4], CultureInfo.InvariantCulture));
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(socketPath));
        UnixRights.Send(socket, Frames.Encode(FrameType.Hello, 0, new PayloadWriter().I64(ring.TotalBytes).Memory.Span), ring.Descriptor);

        var sent = new Queue<byte[]>();
        var sender = new Thread(() =>
        {
            var random = new Random(seed);
            for (int i = 1; i <= count; i++)
            {
                var payload = NextPayload(random, ring.MaxPayloadBytes);
                lock (sent)
                {
                    sent.Enqueue(payload);
                }

                ring.Send(FrameType.PutBegin, (uint)i, payload, Bound);
            }
        });
        sender.Start();

        for (int i = 1; i <= count; i++)
        {
            var reply = ring.Receive(ring.MaxPayloadBytes, Bound);
            byte[] expected;
            lock (sent)
            {
                expected = sent.Dequeue();
            }

            Array.Reverse(expected);
            if (reply.Type != FrameType.Ok || reply.RequestId != (uint)i || !reply.Payload.AsSpan().SequenceEqual(expected))
            {
                Console.WriteLine($"reply {i}: {reply.Type} id {reply.RequestId}, {reply.Payload.Length} bytes, expected {expected.Length}");
                return 3;
            }
        }

        sender.Join();
        Console.WriteLine($"ok {count}");
        return 0;
    }
}
