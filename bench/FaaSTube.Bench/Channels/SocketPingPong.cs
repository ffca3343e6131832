using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;

namespace FaaSTube.Bench.Channels;

/// <summary>
/// The project's baseline for a control call, shared by the scenarios that compare against it
/// (control-floor, channel-latency): an N-byte ping-pong over a blocking Unix socket between two
/// processes, blocking Send/Receive on a dedicated thread in each (no async machinery). Also the
/// small pieces those scenarios share: a dedicated thread, a child process of this program, the
/// percentile, an option.
/// </summary>
internal static class SocketPingPong
{
    /// <summary>The measuring side: <paramref name="warmup"/> + <paramref name="iterations"/> round trips, the times (us) of the last <paramref name="iterations"/>. Call on a dedicated thread (<see cref="OnThread{T}"/>).</summary>
    public static double[] Pings(Socket connection, int warmup, int iterations, int bytes)
    {
        var message = new byte[bytes];
        var reply = new byte[bytes];
        var times = new double[iterations];
        for (int i = -warmup; i < iterations; i++)
        {
            message[0] = (byte)i;
            long t0 = Stopwatch.GetTimestamp();
            SendAll(connection, message);
            ReceiveExactly(connection, reply);
            double us = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            if (reply[0] != message[0])
            {
                throw new InvalidOperationException("the socket echo is out of step");
            }

            if (i >= 0)
            {
                times[i] = us;
            }
        }

        return times;
    }

    /// <summary>The peer's side: echoes <paramref name="count"/> messages of <paramref name="bytes"/>, blocking, on a dedicated thread.</summary>
    public static void Echo(Socket connection, int count, int bytes) => OnThread(() =>
    {
        var buffer = new byte[bytes];
        for (int i = 0; i < count; i++)
        {
            ReceiveExactly(connection, buffer);
            SendAll(connection, buffer);
        }

        return 0;
    });

    /// <summary>Runs <paramref name="work"/> on a dedicated thread and waits for it.</summary>
    public static T OnThread<T>(Func<T> work)
    {
        T? result = default;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                result = work();
            }
            catch (Exception e)
            {
                failure = e;
            }
        }) { IsBackground = true };
        thread.Start();
        thread.Join();
        return failure is null ? result! : throw new InvalidOperationException("a ping-pong thread failed", failure);
    }

    public static void SendAll(Socket socket, byte[] buffer)
    {
        for (int sent = 0; sent < buffer.Length;)
        {
            sent += socket.Send(buffer, sent, buffer.Length - sent, SocketFlags.None);
        }
    }

    public static void ReceiveExactly(Socket socket, byte[] buffer)
    {
        for (int received = 0; received < buffer.Length;)
        {
            int n = socket.Receive(buffer, received, buffer.Length - received, SocketFlags.None);
            received += n > 0 ? n : throw new IOException("the other process closed the socket");
        }
    }

    /// <summary>How to start this program again as a peer process with <paramref name="args"/> (through dotnet when it runs as a dll).</summary>
    public static ProcessStartInfo Child(params string[] args)
    {
        var self = Environment.ProcessPath!;
        var info = new ProcessStartInfo(self) { UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            info.ArgumentList.Add(typeof(SocketPingPong).Assembly.Location);
        }

        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        return info;
    }

    /// <summary>The value at quantile <paramref name="q"/> (0.5: the median): sorted[floor(q n)].</summary>
    public static double Percentile(double[] values, double q)
    {
        var sorted = values.Order().ToArray();
        return sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];
    }

    public static int Option(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    }

    public static string Invariant(long value) => value.ToString(CultureInfo.InvariantCulture);
}
