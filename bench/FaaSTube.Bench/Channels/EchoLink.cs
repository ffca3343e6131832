using System.IO.Pipelines;
using System.Net.Sockets;

namespace FaaSTube.Bench.Channels;

/// <summary>
/// The floor under a FaaSTube call: a 16-byte message echoed by a task on the other end, over the
/// same transport a client uses (a Unix domain socket, or in-memory pipes in process), with no
/// protocol, no request table and no timeout. The control-path benchmarks' baseline.
/// </summary>
internal sealed class EchoLink : IAsyncDisposable
{
    private readonly byte[] _message = new byte[16];
    private readonly byte[] _reply = new byte[16];
    private readonly Func<byte[], byte[], ValueTask> _roundTrip;
    private readonly Func<ValueTask> _close;
    private readonly Task _echo;

    private EchoLink(Func<byte[], byte[], ValueTask> roundTrip, Func<ValueTask> close, Task echo)
    {
        _roundTrip = roundTrip;
        _close = close;
        _echo = echo;
    }

    public static async Task<EchoLink> OpenSocketAsync(string path)
    {
        File.Delete(path);
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var accepting = listener.AcceptAsync();
        await client.ConnectAsync(new UnixDomainSocketEndPoint(path));
        var server = await accepting;
        File.Delete(path);

        var echo = Task.Run(async () =>
        {
            var buffer = new byte[64];
            int n;
            while ((n = await server.ReceiveAsync(buffer)) > 0)
            {
                await server.SendAsync(buffer.AsMemory(0, n));
            }
        });
        return new EchoLink(
            async (message, reply) =>
            {
                await client.SendAsync(message);
                for (int got = 0; got < reply.Length;)
                {
                    got += await client.ReceiveAsync(reply.AsMemory(got));
                }
            },
            () =>
            {
                client.Dispose();
                server.Dispose();
                return ValueTask.CompletedTask;
            },
            echo);
    }

    public static EchoLink OpenPipes()
    {
        var toPeer = new Pipe();
        var fromPeer = new Pipe();
        var echo = Task.Run(async () =>
        {
            while (true)
            {
                var read = await toPeer.Reader.ReadAsync();
                foreach (var segment in read.Buffer)
                {
                    await fromPeer.Writer.WriteAsync(segment);
                }

                toPeer.Reader.AdvanceTo(read.Buffer.End);
                if (read.IsCompleted)
                {
                    await fromPeer.Writer.CompleteAsync();
                    return;
                }
            }
        });
        return new EchoLink(
            async (message, reply) =>
            {
                await toPeer.Writer.WriteAsync(message);
                int got = 0;
                while (got < reply.Length)
                {
                    var read = await fromPeer.Reader.ReadAsync();
                    foreach (var segment in read.Buffer)
                    {
                        segment.Span.CopyTo(reply.AsSpan(got));
                        got += segment.Length;
                    }

                    fromPeer.Reader.AdvanceTo(read.Buffer.End);
                }
            },
            () => toPeer.Writer.CompleteAsync(),
            echo);
    }

    /// <summary>Sends 16 bytes and waits for them to come back.</summary>
    public ValueTask RoundTripAsync() => _roundTrip(_message, _reply);

    public async ValueTask DisposeAsync()
    {
        await _close();
        await _echo.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }
}
