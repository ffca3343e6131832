using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using FaaSTube.Native.Ucx;

namespace FaaSTube.Bench.Remote;

/// <summary>
/// Our UCX bindings (src/FaaSTube.Native/Ucx) on their own: tagged send and receive over TCP, the
/// floor a remote client built on them can reach. The server in the root namespace obeys 32-byte
/// commands from the peer: sink N messages of a size (then an 8-byte acknowledgement), source N
/// messages of a size, or echo N 8-byte pings. Up to <see cref="Window"/> messages are in flight each
/// way, received into one buffer per side (as ucx_perftest does); the peer times each.
/// </summary>
internal sealed class BindingsSubject : RemoteSubject
{
    /// <summary>Messages in flight at once (sends posted, or receives posted).</summary>
    public const int Window = 16;

    private const ulong TagCommand = 0xC0, TagData = 0xDA, TagAck = 0xAC, TagPing = 0x91, TagPong = 0x90;
    private const byte Sink = 1, Source = 2, Echo = 3;
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(5);

    public override string Name => "bindings";

    public override async Task<RemoteServer> ServeAsync(IPAddress at, string device)
    {
        var context = UcxContext.Create(new Dictionary<string, string> { ["TLS"] = "tcp", ["NET_DEVICES"] = device });
        var worker = UcxWorker.Create(context, "remote-baseline-server");
        var listener = await UcxListener.ListenAsync(worker, new IPEndPoint(at, 0)).WaitAsync(Bound);
        var serving = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    await ServeAsync(await (await listener.AcceptAsync()).AcceptAsync(worker));
                }
            }
            catch (System.Threading.Channels.ChannelClosedException)
            {
                // the listener closed: the run is over
            }
        });
        return new RemoteServer($"{listener.LocalEndPoint.Address}:{listener.LocalEndPoint.Port}", async () =>
        {
            await listener.CloseAsync();
            await serving.WaitAsync(Bound);
            worker.Dispose();
            context.Dispose();
        });
    }

    public override async Task<IReadOnlyList<RemoteRow>> MeasureAsync(string connectAddress, RemotePlan plan)
    {
        using var context = UcxContext.Create(UcxContext.TcpOnly); // NET_DEVICES comes from UCX_NET_DEVICES
        using var worker = UcxWorker.Create(context, "remote-baseline-peer");
        var endpoint = await UcxEndpoint.ConnectAsync(worker, IPEndPoint.Parse(connectAddress)).WaitAsync(Bound);
        var rows = new List<RemoteRow>();
        foreach (long size in plan.Sizes)
        {
            var buffer = new byte[size];
            int count = plan.CountOf(size), warmup = plan.WarmupOf(size);
            await PutAsync(endpoint, buffer, warmup);
            var clock = Stopwatch.StartNew();
            await PutAsync(endpoint, buffer, count);
            rows.Add(new RemoteRow(Name, "put", "bindings tag send, peer to root", size, MiBPerSecond(size * count, clock.Elapsed)));

            await GetAsync(endpoint, buffer, warmup);
            clock.Restart();
            await GetAsync(endpoint, buffer, count);
            rows.Add(new RemoteRow(Name, "get", "bindings tag send, root to peer", size, MiBPerSecond(size * count, clock.Elapsed)));
        }

        var times = await PingPongAsync(endpoint, plan.LatencyWarmup, plan.LatencyIterations);
        rows.Add(new RemoteRow(Name, "latency", "bindings 8-byte ping-pong, half the round trip", 8, Percentile(times, 0.5), times.Average()));
        await endpoint.CloseAsync().WaitAsync(Bound);
        return rows;
    }

    private static async Task PutAsync(UcxEndpoint endpoint, byte[] buffer, int count)
    {
        var ack = endpoint.ReceiveAsync(new byte[8], TagAck);
        await endpoint.SendAsync(Command(Sink, buffer.Length, count), TagCommand);
        await Pipelined(count, () => endpoint.SendAsync(buffer, TagData));
        await ack.WaitAsync(Bound);
    }

    private static async Task GetAsync(UcxEndpoint endpoint, byte[] buffer, int count)
    {
        await endpoint.SendAsync(Command(Source, buffer.Length, count), TagCommand);
        await Pipelined(count, () => endpoint.ReceiveAsync(buffer, TagData));
    }

    /// <summary>The one-way latencies (us, half of each round trip) of <paramref name="count"/> pings after <paramref name="warmup"/>.</summary>
    private static async Task<double[]> PingPongAsync(UcxEndpoint endpoint, int warmup, int count)
    {
        await endpoint.SendAsync(Command(Echo, 8, warmup + count), TagCommand);
        var ping = new byte[8];
        var pong = new byte[8];
        var times = new double[count];
        for (int i = -warmup; i < count; i++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(ping, i);
            long t0 = Stopwatch.GetTimestamp();
            var reply = endpoint.ReceiveAsync(pong, TagPong);
            await endpoint.SendAsync(ping, TagPing);
            await reply.WaitAsync(Bound);
            double us = Stopwatch.GetElapsedTime(t0).TotalMicroseconds / 2;
            if (BinaryPrimitives.ReadInt64LittleEndian(pong) != i)
            {
                throw new InvalidOperationException("the echo is out of step");
            }

            if (i >= 0)
            {
                times[i] = us;
            }
        }

        return times;
    }

    /// <summary>The server's side of one connection: commands until the peer goes.</summary>
    private static async Task ServeAsync(UcxEndpoint endpoint)
    {
        var command = new byte[32];
        while (true)
        {
            try
            {
                await endpoint.ReceiveAsync(command, TagCommand);
            }
            catch (Exception) when (endpoint.Failure is not null)
            {
                return; // the peer is done (or gone)
            }

            byte op = command[0];
            long size = BinaryPrimitives.ReadInt64LittleEndian(command.AsSpan(8));
            int count = BinaryPrimitives.ReadInt32LittleEndian(command.AsSpan(16));
            var buffer = new byte[size];
            switch (op)
            {
                case Sink:
                    await Pipelined(count, () => endpoint.ReceiveAsync(buffer, TagData));
                    await endpoint.SendAsync(new byte[8], TagAck);
                    break;
                case Source:
                    await Pipelined(count, () => endpoint.SendAsync(buffer, TagData));
                    break;
                case Echo:
                    for (int i = 0; i < count; i++)
                    {
                        await endpoint.ReceiveAsync(buffer, TagPing);
                        await endpoint.SendAsync(buffer, TagPong);
                    }

                    break;
                default:
                    throw new InvalidOperationException($"unknown command {op}");
            }
        }
    }

    /// <summary>Starts <paramref name="count"/> operations, at most <see cref="Window"/> in flight, and waits for all.</summary>
    private static async Task Pipelined(int count, Func<Task> start)
    {
        var inFlight = new Queue<Task>();
        for (int i = 0; i < count; i++)
        {
            if (inFlight.Count == Window)
            {
                await inFlight.Dequeue().WaitAsync(Bound);
            }

            inFlight.Enqueue(start());
        }

        await Task.WhenAll(inFlight).WaitAsync(Bound);
    }

    private static byte[] Command(byte op, long size, int count)
    {
        var command = new byte[32];
        command[0] = op;
        BinaryPrimitives.WriteInt64LittleEndian(command.AsSpan(8), size);
        BinaryPrimitives.WriteInt32LittleEndian(command.AsSpan(16), count);
        return command;
    }

    private static double MiBPerSecond(long bytes, TimeSpan elapsed) => bytes / (1024.0 * 1024.0) / elapsed.TotalSeconds;

    internal static double Percentile(double[] values, double q)
    {
        var sorted = values.Order().ToArray();
        return sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];
    }
}
