using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using FaaSTube.Channels;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Transport;
using FaaSTube.Native;
using FaaSTube.Tests.Support;
using Microsoft.Win32.SafeHandles;
using static FaaSTube.Channels.Transport.ControlRingLayout;

namespace FaaSTube.Tests.Channels;

/// <summary>The shared-memory control path (Channels/Transport/ControlRing*.cs): round trips across threads and processes, and a node that trusts nothing the client writes.</summary>
[TestClass]
public sealed class ControlRingTests
{
    private const int Capacity = 4096;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Short = TimeSpan.FromMilliseconds(200);

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task Frames_of_random_sizes_cross_threads_in_order_through_many_wrap_arounds()
    {
        var random = Seeds.Create(TestContext);
        int seed = random.Next();
        const int Count = 20_000;
        var (client, node) = Pair(Capacity);
        using (client)
        using (node)
        {
            // The node echoes every request reversed; the client sends from one thread and checks the replies on another.
            var echo = Task.Factory.StartNew(() =>
            {
                for (int i = 0; i < Count; i++)
                {
                    var request = node.Receive(node.MaxPayloadBytes, Bound);
                    Array.Reverse(request.Payload);
                    node.Send(FrameType.Ok, request.RequestId, request.Payload, Bound);
                }
            }, TaskCreationOptions.LongRunning);
            long sentBytes = 0;
            ulong sentSum = 0;
            var send = Task.Factory.StartNew(() =>
            {
                var payloads = new Random(seed);
                for (int i = 1; i <= Count; i++)
                {
                    var payload = RingClient.NextPayload(payloads, client.MaxPayloadBytes);
                    sentBytes += RecordBytes(payload.Length);
                    sentSum += Checksum(payload, (uint)i);
                    client.Send(FrameType.PutBegin, (uint)i, payload, Bound);
                }
            }, TaskCreationOptions.LongRunning);

            var expected = new Random(seed);
            ulong receivedSum = 0;
            await Task.Run(() =>
            {
                for (int i = 1; i <= Count; i++)
                {
                    var reply = client.Receive(client.MaxPayloadBytes, Bound);
                    var want = RingClient.NextPayload(expected, client.MaxPayloadBytes);
                    Array.Reverse(want);
                    Assert.AreEqual(FrameType.Ok, reply.Type);
                    Assert.AreEqual((uint)i, reply.RequestId, "in order");
                    CollectionAssert.AreEqual(want, reply.Payload, $"frame {i}");
                    Array.Reverse(reply.Payload);
                    receivedSum += Checksum(reply.Payload, reply.RequestId);
                }
            }).WaitAsync(Bound * 2);
            await Task.WhenAll(echo, send).WaitAsync(Bound);

            Assert.AreEqual(sentSum, receivedSum);
            Assert.IsTrue(sentBytes > 100L * Capacity, $"{sentBytes} bytes through a ring of {Capacity}: it wrapped many times");
            TestContext.WriteLine($"{Count} round trips, {sentBytes} record bytes each way; futex sleeps: client {client.FutexWaits}, node {node.FutexWaits}");
        }
    }

    [TestMethod]
    public async Task A_client_in_another_process_round_trips_through_a_ring_the_node_adopted()
    {
        var random = Seeds.Create(TestContext);
        int seed = random.Next();
        const int Count = 3000;
        string path = Path.Combine(Path.GetTempPath(), $"ft-ring-{Guid.NewGuid():N}"[..20] + ".sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        try
        {
            using var child = ChildProcess.Start("ring-client", path, seed.ToString(), Count.ToString(), Capacity.ToString());
            using var cts = new CancellationTokenSource(Bound);
            using var connection = await listener.AcceptAsync(cts.Token);
            var hello = await UnixRights.ReceiveAsync(connection, 64, cts.Token) ?? throw new AssertFailedException("no Hello");
            Assert.AreEqual((byte)FrameType.Hello, hello.Frame[0]);
            Assert.AreEqual(1, hello.Descriptors.Count, "one descriptor with the Hello");
            using var node = ControlRing.Adopt(hello.Descriptors[0], BinaryPrimitives.ReadInt64LittleEndian(hello.Frame.AsSpan(5)));
            Assert.IsTrue(node.IsNodeSide);

            var (receiver, frames) = Receiving(node);
            using (receiver)
            {
                var expected = new Random(seed);
                for (int i = 1; i <= Count; i++)
                {
                    var request = await frames.ReadAsync(cts.Token);
                    Assert.AreEqual(FrameType.PutBegin, request.Type);
                    Assert.AreEqual((uint)i, request.RequestId);
                    CollectionAssert.AreEqual(RingClient.NextPayload(expected, node.MaxPayloadBytes), request.Payload, $"request {i}");
                    Array.Reverse(request.Payload);
                    node.Send(FrameType.Ok, request.RequestId, request.Payload, Bound);
                }
            }

            var (exit, output) = await child.WaitAsync();
            Assert.AreEqual(0, exit, output);
            Assert.AreEqual($"ok {Count}", output.Trim());
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestMethod]
    public void Garbage_in_the_request_header_is_refused_and_the_ring_stays_closed()
    {
        var random = Seeds.Create(TestContext);
        var (client, node) = Pair(Capacity);
        using (client)
        using (node)
        {
            var header = Ring(client, 0)[..HeaderBytes];
            random.NextBytes(header);
            BinaryPrimitives.WriteUInt64LittleEndian(header[ProducerSequenceOffset..], BinaryPrimitives.ReadUInt64LittleEndian(header) | (1UL << 63)); // never a plausible count

            var e = Assert.ThrowsExactly<InvalidDataException>(() => node.Receive(node.MaxPayloadBytes, Bound));
            TestContext.WriteLine(e.Message);
            Assert.ThrowsExactly<InvalidDataException>(() => node.TryReceive(node.MaxPayloadBytes, out _), "a broken ring refuses every later call");
            Assert.ThrowsExactly<InvalidDataException>(() => node.TrySend(FrameType.Ok, 1, []));
        }
    }

    [TestMethod]
    public void A_producer_sequence_behind_what_the_node_consumed_or_beyond_the_capacity_is_refused()
    {
        var (client, node) = Pair(Capacity);
        using (client)
        using (node)
        {
            client.Send(FrameType.Get, 7, new byte[40], Bound);
            Assert.AreEqual(7u, node.Receive(node.MaxPayloadBytes, Bound).RequestId);
            WriteSequence(client, 0, ProducerSequenceOffset, 16); // back behind the 64 bytes the node consumed
            Assert.ThrowsExactly<InvalidDataException>(() => node.Receive(node.MaxPayloadBytes, Bound));
        }

        (client, node) = Pair(Capacity);
        using (client)
        using (node)
        {
            WriteSequence(client, 0, ProducerSequenceOffset, Capacity + 16); // more than the ring can hold
            Assert.ThrowsExactly<InvalidDataException>(() => node.Receive(node.MaxPayloadBytes, Bound));
        }
    }

    [TestMethod]
    public void A_reply_consumer_sequence_ahead_of_what_the_node_published_or_going_back_is_refused()
    {
        var (client, node) = Pair(Capacity);
        using (client)
        using (node)
        {
            WriteSequence(client, 1, ConsumerSequenceOffset, 1000); // the client claims to have read replies never sent
            Assert.ThrowsExactly<InvalidDataException>(() => node.Send(FrameType.Ok, 1, new byte[8], Bound));
        }

        (client, node) = Pair(Capacity);
        using (client)
        using (node)
        {
            node.Send(FrameType.Ok, 1, new byte[8], Bound);
            Assert.AreEqual(1u, client.Receive(64, Bound).RequestId);
            node.Send(FrameType.Ok, 2, new byte[8], Bound); // the node has seen the client's sequence at 32
            WriteSequence(client, 1, ConsumerSequenceOffset, 0); // and now the client claims it never read
            Assert.ThrowsExactly<InvalidDataException>(() => node.TrySend(FrameType.Ok, 3, []));
        }
    }

    [TestMethod]
    public void A_record_over_the_limit_or_longer_than_announced_or_of_an_unknown_type_is_refused()
    {
        var (client, node) = Pair(Capacity);
        using (client)
        using (node)
        {
            client.Send(FrameType.PutBegin, 1, new byte[600], Bound);
            StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => node.Receive(512, Bound)).Message, "over the limit of 512");
        }

        foreach (var (length, type, announced) in new[] { (int.MaxValue, (byte)FrameType.Get, 32), (-5, (byte)FrameType.Get, 32), (100, (byte)FrameType.Get, 32), (8, (byte)200, 32), (0, (byte)FrameType.Get, 8) })
        {
            (client, node) = Pair(Capacity);
            using (client)
            using (node)
            {
                WriteRecordHeader(Ring(client, 0)[HeaderBytes..], type, 9, length);
                WriteSequence(client, 0, ProducerSequenceOffset, (ulong)announced);
                var e = Assert.ThrowsExactly<InvalidDataException>(() => node.Receive(Capacity, Bound), $"length {length}, type {type}, {announced} bytes announced");
                TestContext.WriteLine(e.Message);
            }
        }
    }

    [TestMethod]
    public void Wrap_markers_only_count_where_a_producer_can_have_written_them()
    {
        // Announced but never written (zeros: a wrap marker at offset 0), a wrap with nothing after it, a wrap before a record that fitted.
        var cases = new (int Consumed, ulong Announced, int NextLength, string What)[]
        {
            (0, 48, -1, "never starts the area"),
            (Capacity - 64, 64, -1, "always followed by a record"),
            (Capacity - 64, 96, 8, "before a record of 32 bytes that fitted"),
        };
        foreach (var (consumed, announced, nextLength, what) in cases)
        {
            var (client, node) = Pair(Capacity);
            using (client)
            using (node)
            {
                if (consumed > 0)
                {
                    for (int left = consumed; left > 0;) // moves both sides to offset 'consumed'
                    {
                        int record = Math.Min(left, client.MaxPayloadBytes + RecordHeaderBytes);
                        client.Send(FrameType.PutPart, 1, new byte[record - RecordHeaderBytes], Bound);
                        Assert.AreEqual(record - RecordHeaderBytes, node.Receive(Capacity, Bound).Payload.Length);
                        left -= record;
                    }

                    WriteRecordHeader(Ring(client, 0)[(HeaderBytes + consumed)..], WrapType, 0, 0);
                }

                if (nextLength >= 0)
                {
                    WriteRecordHeader(Ring(client, 0)[HeaderBytes..], (byte)FrameType.Get, 2, nextLength);
                }

                WriteSequence(client, 0, ProducerSequenceOffset, (ulong)consumed + announced);
                StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => node.Receive(Capacity, Bound)).Message, what);
            }
        }
    }

    [TestMethod]
    public void A_client_that_never_publishes_ends_in_a_timeout_with_the_node_asleep_not_spinning()
    {
        var (client, node) = Pair(Capacity);
        using (client)
        using (node)
        {
            var clock = Stopwatch.StartNew();
            Assert.ThrowsExactly<TimeoutException>(() => node.Receive(node.MaxPayloadBytes, Short));
            Assert.IsTrue(clock.Elapsed >= Short && clock.Elapsed < Bound, $"{clock.Elapsed}");
            Assert.IsTrue(node.FutexWaits is >= 1 and <= 3, $"slept in the kernel: {node.FutexWaits} futex waits");
        }
    }

    [TestMethod]
    public async Task A_client_that_keeps_waking_the_node_gets_it_polled_not_a_busy_core()
    {
        var (client, node) = Pair(Capacity);
        using (client)
        using (node)
        {
            nint sleeper = client.Memory.Pointer + RingOffset(0, Capacity) + ConsumerSleeperOffset; // the node sleeps on the request ring's consumer word: wake it, publish nothing
            using var stop = new CancellationTokenSource();
            var flipper = Task.Factory.StartNew(() =>
            {
                while (!stop.IsCancellationRequested)
                {
                    ClearWord(sleeper);
                    WakeWord(sleeper);
                }
            }, TaskCreationOptions.LongRunning);

            Assert.ThrowsExactly<TimeoutException>(() => node.Receive(node.MaxPayloadBytes, TimeSpan.FromMilliseconds(300)));
            stop.Cancel();
            await flipper.WaitAsync(Bound);
            TestContext.WriteLine($"futex waits {node.FutexWaits}, spurious {node.SpuriousWakes}");
            Assert.IsTrue(node.SpuriousWakes >= ControlRing.SpuriousWakeBudget, "the client did wake the node again and again");
            Assert.IsTrue(node.FutexWaits <= ControlRing.SpuriousWakeBudget + 2, $"{node.FutexWaits} futex waits: bounded, then polled each millisecond");
        }
    }

    [TestMethod]
    public void A_full_reply_ring_whose_reader_never_reads_fails_the_nodes_send_within_its_timeout()
    {
        var (client, node) = Pair(Capacity);
        using (client)
        using (node)
        {
            int sent = 0;
            while (node.TrySend(FrameType.Ok, (uint)sent, new byte[64]))
            {
                sent++;
            }

            Assert.AreEqual(Capacity / RecordBytes(64), sent, "the ring holds exactly what fits");
            var clock = Stopwatch.StartNew();
            Assert.ThrowsExactly<TimeoutException>(() => node.Send(FrameType.Ok, 999, new byte[64], Short));
            Assert.IsTrue(clock.Elapsed >= Short && clock.Elapsed < Bound, $"{clock.Elapsed}");

            Assert.AreEqual(0u, client.Receive(64, Bound).RequestId, "one reply read makes room");
            node.Send(FrameType.Ok, 1000, new byte[64], Short);
        }
    }

    [TestMethod]
    public async Task Cancellation_and_dispose_wake_a_blocked_receive_at_once()
    {
        var (client, node) = Pair(Capacity);
        using (client)
        {
            using var cts = new CancellationTokenSource();
            var cancelled = Task.Factory.StartNew(() => node.Receive(64, Timeout.InfiniteTimeSpan, cts.Token), TaskCreationOptions.LongRunning);
            await cts.CancelAsync();
            await Assert.ThrowsAsync<OperationCanceledException>(() => cancelled.WaitAsync(Bound));

            var disposed = Task.Factory.StartNew(() => node.Receive(64, Timeout.InfiniteTimeSpan), TaskCreationOptions.LongRunning);
            node.Dispose();
            await Assert.ThrowsAsync<ObjectDisposedException>(() => disposed.WaitAsync(Bound));
            Assert.ThrowsExactly<ObjectDisposedException>(() => node.TrySend(FrameType.Ok, 1, []));
        }
    }

    [TestMethod]
    public async Task The_receiver_ends_with_the_violation()
    {
        var (client, node) = Pair(Capacity);
        using var clientSide = client;
        using var nodeSide = node;
        var (receiver, frames) = Receiving(node);
        using (receiver)
        {
            client.Send(FrameType.Where, 3, new byte[5], Bound);
            Assert.AreEqual(3u, (await frames.ReadAsync().AsTask().WaitAsync(Bound)).RequestId);
            WriteSequence(client, 0, ProducerSequenceOffset, 5); // behind the 32 bytes consumed
            WakeWord(client.Memory.Pointer + RingOffset(0, Capacity) + ConsumerSleeperOffset); // as a producer does after publishing
            var ended = await Assert.ThrowsAsync<System.Threading.Channels.ChannelClosedException>(() => frames.ReadAsync().AsTask().WaitAsync(Bound));
            Assert.IsInstanceOfType<InvalidDataException>(ended.InnerException, "the receiver ends with the violation");
        }
    }

    [TestMethod]
    public void The_client_checks_the_nodes_half_too()
    {
        var (client, node) = Pair(Capacity);
        using (client)
        using (node)
        {
            WriteSequence(client, 1, ProducerSequenceOffset, Capacity * 2);
            Assert.ThrowsExactly<InvalidDataException>(() => client.Receive(64, Bound));
        }
    }

    [TestMethod]
    public void Adopt_refuses_what_is_not_a_sealed_memfd_of_a_ring_layout_of_the_size_said()
    {
        using var client = ControlRing.Create(Capacity);

        var wrongSize = Duplicate(client.Descriptor); // a valid layout, but not this memfd's size
        Assert.ThrowsExactly<TubeException>(() => ControlRing.Adopt(wrongSize, TotalBytes(2 * Capacity)));
        Assert.IsTrue(wrongSize.IsClosed, "a refused descriptor is closed");

        var noLayout = Duplicate(client.Descriptor);
        Assert.ThrowsExactly<TubeException>(() => ControlRing.Adopt(noLayout, client.TotalBytes + 16));
        Assert.IsTrue(noLayout.IsClosed);

        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(file, new byte[client.TotalBytes]);
            var regular = File.OpenHandle(file, FileMode.Open, FileAccess.ReadWrite);
            Assert.ThrowsExactly<TubeException>(() => ControlRing.Adopt(regular, client.TotalBytes), "a regular file of the right size");
            Assert.IsTrue(regular.IsClosed);
        }
        finally
        {
            File.Delete(file);
        }

        int raw = Interop.Libc.memfd_create("unsealed", Interop.Libc.MFD_CLOEXEC | Interop.Libc.MFD_ALLOW_SEALING);
        Assert.IsTrue(raw >= 0);
        var unsealed = new SafeFileHandle(raw, ownsHandle: true);
        Assert.AreEqual(0, Interop.Libc.ftruncate(raw, client.TotalBytes));
        var refused = Assert.ThrowsExactly<TubeException>(() => ControlRing.Adopt(unsealed, client.TotalBytes), "an unsealed memfd: the client could shrink it under the node");
        Assert.AreEqual(TubeError.BadRequest, refused.Error);

        using var adopted = ControlRing.Adopt(Duplicate(client.Descriptor), client.TotalBytes);
        Assert.AreEqual(Capacity, adopted.Capacity, "the right one is taken");
    }

    /// <summary>A client ring and the node's adoption of a duplicate of its descriptor, in this process.</summary>
    private static (ControlRing Client, ControlRing Node) Pair(int capacity)
    {
        var client = ControlRing.Create(capacity);
        return (client, ControlRing.Adopt(Duplicate(client.Descriptor), client.TotalBytes));
    }

    private static SafeFileHandle Duplicate(SafeFileHandle fd)
    {
        int raw = Interop.Libc.fcntl((int)fd.DangerousGetHandle(), Interop.Libc.F_DUPFD_CLOEXEC, 0);
        Assert.IsTrue(raw >= 0, "fcntl(F_DUPFD_CLOEXEC)");
        return new SafeFileHandle(raw, ownsHandle: true);
    }

    /// <summary>Ring 0 (requests) or 1 (replies), header and data, as the client's mapping sees it.</summary>
    private static Span<byte> Ring(ControlRing ring, int index) =>
        ring.Memory.GetSpan().Slice(RingOffset(index, ring.Capacity), HeaderBytes + ring.Capacity);

    private static unsafe void ClearWord(nint address) => Volatile.Write(ref *(int*)address, 0);

    private static unsafe void WakeWord(nint address) => Interop.Libc.FutexWake((int*)address, int.MaxValue);

    private static unsafe void WriteSequence(ControlRing ring, int index, int offset, ulong value) =>
        Volatile.Write(ref *(ulong*)((byte*)ring.Memory.Pointer + RingOffset(index, ring.Capacity) + offset), value);

    private static ulong Checksum(byte[] payload, uint id)
    {
        ulong sum = 14695981039346656037UL ^ id;
        foreach (byte b in payload)
        {
            sum = (sum ^ b) * 1099511628211UL;
        }

        return sum;
    }

    /// <summary>A receiver whose frames (handed over on its thread) a test reads from a channel; the channel ends with the receiver's end.</summary>
    private static (ControlRingReceiver Receiver, System.Threading.Channels.ChannelReader<ControlFrame> Frames) Receiving(ControlRing ring)
    {
        var frames = System.Threading.Channels.Channel.CreateUnbounded<ControlFrame>();
        var receiver = new ControlRingReceiver(ring, ring.MaxPayloadBytes, (f, _) => frames.Writer.TryWrite(f), e => frames.Writer.TryComplete(e));
        return (receiver, frames.Reader);
    }
}
