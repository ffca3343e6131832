using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Transport;
using static FaaSTube.Bench.Channels.SocketPingPong;

namespace FaaSTube.Bench.Channels;

/// <summary>
/// The floor of a control call: an N-byte ping-pong between two processes (this program and itself
/// as "control-floor-peer"), p50/p99 of the round trip, over (a) a blocking Unix socket, blocking
/// Send/Receive on a dedicated thread in each process, no async machinery: the baseline the project
/// measures itself against; (b) the control ring (Channels/Transport/ControlRing.cs), spin then futex;
/// (c) the control ring with no spin (every wait sleeps on the futex: the cost of a wake-up); and,
/// as a reference that no scheduler is in, (d) both ends of a ring in one thread of this process
/// (request, its echo, the reply: the ring's own software cost per round trip, no hand-off).
/// Same run, same message size, the same round trips after the same warm-up for each.
/// <code>FAASTUBE_BACKEND=simulated dotnet run -c Release --project bench/FaaSTube.Bench -- control-floor [--iterations 20000] [--warmup 2000] [--bytes 64]</code>
/// </summary>
internal static class ControlFloorScenario
{
    private const int RingCapacity = 64 << 10;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    public static async Task<int> RunAsync(string[] args)
    {
        int iterations = Option(args, "--iterations", 20_000);
        int warmup = Option(args, "--warmup", 2_000);
        int bytes = Option(args, "--bytes", 64);
        string path = Path.Combine(Path.GetTempPath(), $"ft-floor-{Environment.ProcessId}.sock");
        File.Delete(path);
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        using var peer = StartPeer(path, warmup + iterations, bytes);
        using var connection = await listener.AcceptAsync().WaitAsync(Bound);
        File.Delete(path);

        var socket = OnThread(() => Pings(connection, warmup, iterations, bytes));
        var ring = OnThread(() => RingPings(connection, warmup, iterations, bytes, spin: true));
        var sleeping = OnThread(() => RingPings(connection, warmup, iterations, bytes, spin: false));
        var inline = OnThread(() => InlinePings(warmup, iterations, bytes));
        if (!peer.WaitForExit(30_000) || peer.ExitCode != 0)
        {
            Console.Error.WriteLine($"control-floor: the peer failed: {peer.StandardError.ReadToEnd()}");
            return 1;
        }

        Console.WriteLine($"control-floor: {bytes}-byte ping-pong between two processes, {iterations} round trips after {warmup} warm-up, {Environment.ProcessorCount} cores");
        Console.WriteLine();
        Console.WriteLine("| path | p50 us | p99 us | p50 / socket | p99 / socket |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: |");
        Row("blocking Unix socket (baseline)", socket, socket);
        Row("control ring (spin, then futex)", ring, socket);
        Row("control ring, no spin (futex every wait)", sleeping, socket);
        Row("reference: both ring ends in one thread (no hand-off)", inline, socket);
        return 0;
    }

    /// <summary>The peer: echoes socket messages, then serves each ring the parent hands it (a Hello with the descriptor), each on a thread of its own.</summary>
    public static async Task<int> PeerMainAsync(string[] args)
    {
        int count = int.Parse(args[1], CultureInfo.InvariantCulture);
        int bytes = int.Parse(args[2], CultureInfo.InvariantCulture);
        using var connection = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        connection.Connect(new UnixDomainSocketEndPoint(args[0]));
        Echo(connection, count, bytes);

        for (int run = 0; run < 2; run++)
        {
            var hello = await UnixRights.ReceiveAsync(connection, 64, CancellationToken.None) ?? throw new InvalidOperationException("no Hello");
            using var ring = ControlRing.Adopt(hello.Descriptors[0], BinaryPrimitives.ReadInt64LittleEndian(hello.Frame.AsSpan(5)));
            ring.SpinTime = hello.Frame[13] != 0 ? ring.SpinTime : TimeSpan.Zero;
            OnThread(() =>
            {
                for (int i = 0; i < count; i++)
                {
                    var request = ring.Receive(bytes, Bound);
                    ring.Send(FrameType.Ok, request.RequestId, request.Payload, Bound);
                }

                return Array.Empty<double>();
            });
            connection.Send([1]); // done with this ring
        }

        return 0;
    }

    private static double[] RingPings(Socket connection, int warmup, int iterations, int bytes, bool spin)
    {
        using var ring = ControlRing.Create(RingCapacity);
        if (!spin)
        {
            ring.SpinTime = TimeSpan.Zero;
        }

        var hello = new PayloadWriter().I64(ring.TotalBytes).U8(spin ? (byte)1 : (byte)0).Memory.Span;
        UnixRights.Send(connection, Frames.Encode(FrameType.Hello, 0, hello), ring.Descriptor);
        var message = new byte[bytes];
        var times = new double[iterations];
        for (int i = -warmup; i < iterations; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            ring.Send(FrameType.Get, (uint)i, message, Bound);
            var reply = ring.Receive(bytes, Bound);
            double us = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            if (reply.RequestId != (uint)i || reply.Payload.Length != bytes)
            {
                throw new InvalidOperationException("the ring echo is out of step");
            }

            if (i >= 0)
            {
                times[i] = us;
            }
        }

        ReceiveExactly(connection, new byte[1]); // the peer let go of this ring
        return times;
    }

    private static double[] InlinePings(int warmup, int iterations, int bytes)
    {
        using var client = ControlRing.Create(RingCapacity);
        int fd = FaaSTube.Native.Interop.Libc.fcntl((int)client.Descriptor.DangerousGetHandle(), FaaSTube.Native.Interop.Libc.F_DUPFD_CLOEXEC, 0);
        using var node = ControlRing.Adopt(new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true), client.TotalBytes);
        var message = new byte[bytes];
        var times = new double[iterations];
        for (int i = -warmup; i < iterations; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            client.Send(FrameType.Get, (uint)i, message, Bound);
            var request = node.Receive(bytes, Bound);
            node.Send(FrameType.Ok, request.RequestId, request.Payload, Bound);
            var reply = client.Receive(bytes, Bound);
            double us = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            if (reply.RequestId != (uint)i)
            {
                throw new InvalidOperationException("the inline echo is out of step");
            }

            if (i >= 0)
            {
                times[i] = us;
            }
        }

        return times;
    }

    private static void Row(string path, double[] times, double[] baseline)
    {
        double p50 = Percentile(times, 0.50), p99 = Percentile(times, 0.99);
        double b50 = Percentile(baseline, 0.50), b99 = Percentile(baseline, 0.99);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {path} | {p50:0.0} | {p99:0.0} | {p50 / b50:0.00}x | {p99 / b99:0.00}x |"));
    }

    private static Process StartPeer(string path, int count, int bytes)
    {
        var info = Child("control-floor-peer", path, Invariant(count), Invariant(bytes));
        info.RedirectStandardError = true;
        return Process.Start(info) ?? throw new InvalidOperationException("the peer did not start");
    }
}
