using FaaSTube.Channels;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Memory;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// Arena ranges through a node (docs/protocol.md, Arena ranges), once per transport: the socket, the
/// control ring and in-process direct calls. Allocations carved from a client's range, their publish
/// and release, refill, return; and hostile carves written by hand, each refused with its code and
/// nothing registered.
/// </summary>
public abstract class ArenaContractTests : PerTransportTests
{
    private const long MiB = 1 << 20;

    private Task<TubeClient> Connect(NodeHarness h, long arenaBytes = 0, string workflow = "wf") =>
        h.ConnectAsync(InProcess, workflow, controlRingBytes: ControlRingBytes, arenaBytes: arenaBytes);

    private static Task<NodeHarness> StartAsync(Action<TubeNodeOptions>? configure = null) =>
        NodeHarness.StartAsync(configure: o =>
        {
            o.Pool.SlabBytes = 32 << 20;
            configure?.Invoke(o);
        });

    private static PoolStatistics Stats(NodeHarness h) => h.Node.PoolOf(0).GetStatistics();

    [TestMethod]
    public async Task Allocations_from_the_arena_take_one_lease_and_consumers_read_the_published_bytes()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await StartAsync();
        var producer = await Connect(h, arenaBytes: 4 * MiB);
        var consumer = await Connect(h);
        var sizes = Enumerable.Range(0, 6).Select(_ => (long)random.Next(1, 256 << 10)).ToArray();
        var published = new List<(TubeId Id, long Length, ulong Seed)>();

        foreach (var size in sizes)
        {
            var buffer = await producer.AllocateAsync(size);
            Assert.AreEqual(size, buffer.Memory.Length);
            ulong seed = (ulong)random.NextInt64();
            using var stream = buffer.Device.CreateStream();
            await stream.FillPatternAsync(buffer.Memory, seed);
            published.Add((await producer.PublishAsync(buffer, stream), size, seed));
        }

        Assert.AreEqual(1, producer.Arena!.Leases, "six allocations under half the range: one lease, the only round trip");
        foreach (var (id, length, seed) in published)
        {
            await using var got = await consumer.GetAsync(id);
            Assert.AreEqual(TubePath.ZeroCopy, got.Path);
            using var check = got.Device.CreateStream();
            Assert.AreEqual(PoolHarness.Expected(length, seed), await check.ChecksumAsync(got.Memory), $"{id}: the consumer reads the producer's bytes");
        }

        await consumer.FlushAsync();
        await producer.FlushAsync();
        var stats = Stats(h);
        Assert.AreEqual(4 * MiB, stats.ArenaLeasedBytes);
        Assert.AreEqual(4 * MiB, stats.ArenaUnusedBytes, "every piece was consumed: its bytes are the range's again");
        Assert.AreEqual(4 * MiB, stats.InUseBytes, "only the range is in use");
        var gpu = FaaSTube.Channels.Admin.NodeStatusBuilder.Build(h.Node, 0).Gpus[0];
        Assert.AreEqual((4 * MiB, 4 * MiB), (gpu.ArenaLeasedBytes, gpu.ArenaUnusedBytes), "the admin status shows the arena bytes");
    }

    [TestMethod]
    public async Task A_get_started_before_the_publish_of_an_arena_piece_waits_for_it()
    {
        await using var h = await StartAsync();
        var producer = await Connect(h, arenaBytes: MiB);
        var consumer = await Connect(h);
        var buffer = await producer.AllocateAsync(64 << 10);
        await producer.FlushAsync(); // the carve is registered: the id exists, unpublished

        var get = consumer.GetAsync(buffer.Id);
        Assert.IsFalse(get.IsCompleted, "nothing published yet");
        using var stream = buffer.Device.CreateStream();
        await stream.FillPatternAsync(buffer.Memory, 77);
        await producer.PublishAsync(buffer, stream);

        await using var got = await get;
        using var check = got.Device.CreateStream();
        Assert.AreEqual(PoolHarness.Expected(64 << 10, 77), await check.ChecksumAsync(got.Memory));
    }

    [TestMethod]
    public async Task A_get_that_overtakes_the_producers_carve_waits_for_it_and_one_for_a_carve_that_never_comes_is_not_found()
    {
        await using var h = await StartAsync();
        var producer = await Connect(h);
        var consumer = await Connect(h);
        var range = await LeaseAsync(producer, MiB);
        var id = NextId(producer);

        var get = consumer.GetAsync(id); // the consumer heard of the id before the node read the producer's carve
        await Task.Yield();
        Assert.IsFalse(get.IsCompleted, "an arena id of a live producer, not carved yet: the Get waits");
        await CarveAsync(producer, range.Range, id, 0, 4096);
        Assert.IsFalse(get.IsCompleted, "carved, not published: still waiting");
        await PublishAsync(producer, id);
        await using (var got = await get)
        {
            Assert.AreEqual(4096L, got.Memory.Length);
        }

        // The same to host memory: the client's one-request GetWhole asks without waiting (NotFound
        // while the carve has not come), then its Get waits for the carve and the publish.
        var hostId = NextId(producer);
        var back = new byte[4096];
        var hostGet = consumer.GetAsync(hostId, back);
        await Task.Yield();
        await CarveAsync(producer, range.Range, hostId, 4096, 4096);
        await PublishAsync(producer, hostId);
        Assert.AreEqual(4096L, await hostGet, "a host read that overtook the carve got the data, not NotFound");

        var never = NextId(producer);
        var pending = consumer.GetAsync(never);
        var ended = h.SessionEnded(producer.SessionId);
        await producer.DisposeAsync(); // the producer goes without carving it
        await ended;
        Assert.AreEqual(TubeError.NotFound, (await Assert.ThrowsAsync<TubeException>(async () => await pending)).Error, "its producer is gone: NotFound, not a wait to the end");
        Assert.AreEqual(TubeError.NotFound, (await Assert.ThrowsAsync<TubeException>(async () => await consumer.GetAsync(TubeId.ForArena(consumer.SessionId + 1000, 5)))).Error, "an arena id of no live session is NotFound at once");
    }

    [TestMethod]
    public async Task A_used_up_range_is_returned_and_the_next_one_was_leased_ahead()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await StartAsync();
        var producer = await Connect(h, arenaBytes: MiB);
        var kept = new List<(TubeBuffer Buffer, ulong Seed)>();
        for (int i = 0; i < 12; i++)
        {
            var buffer = await producer.AllocateAsync(200 << 10); // five fit a range: three ranges in all
            ulong seed = (ulong)random.NextInt64();
            using var stream = buffer.Device.CreateStream();
            await stream.FillPatternAsync(buffer.Memory, seed);
            await stream.SynchronizeAsync();
            kept.Add((buffer, seed));
        }

        await producer.FlushAsync();
        Assert.AreEqual(3, producer.Arena!.Leases, "a range per five allocations, each leased ahead of its need");
        var stats = Stats(h);
        Assert.IsLessThanOrEqualTo(2 * MiB, stats.ArenaLeasedBytes, "used-up ranges went back: the one in use and at most one ahead");
        Assert.AreEqual(12 * (200L << 10) + stats.ArenaUnusedBytes, stats.InUseBytes, "in use: every piece, and the free part of the ranges held");

        foreach (var (buffer, seed) in kept)
        {
            using var check = buffer.Device.CreateStream();
            Assert.AreEqual(PoolHarness.Expected(buffer.Memory.Length, seed), await check.ChecksumAsync(buffer.Memory), "pieces of returned ranges keep their bytes");
            await buffer.DisposeAsync(); // never published: dropped
        }

        await producer.FlushAsync();
        Assert.AreEqual(Stats(h).ArenaLeasedBytes, Stats(h).InUseBytes, "the dropped pieces are gone; only ranges held remain");
        var ended = h.SessionEnded(producer.SessionId);
        await producer.DisposeAsync();
        await ended.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.AreEqual(0L, Stats(h).InUseBytes, "a client's dispose returns its ranges");
        Assert.AreEqual(0L, Stats(h).ArenaLeasedBytes);
        h.Node.PoolOf(0).CheckInvariants();
    }

    [TestMethod]
    public async Task An_allocation_larger_than_a_range_takes_the_round_trip()
    {
        await using var h = await StartAsync();
        var producer = await Connect(h, arenaBytes: MiB);
        var consumer = await Connect(h);
        var buffer = await producer.AllocateAsync(3 * MiB);
        Assert.AreEqual(0, producer.Arena!.Leases, "no range for what no range holds");
        using var stream = buffer.Device.CreateStream();
        await stream.FillPatternAsync(buffer.Memory, 3);
        var id = await producer.PublishAsync(buffer, stream);
        await using var got = await consumer.GetAsync(id);
        using var check = got.Device.CreateStream();
        Assert.AreEqual(PoolHarness.Expected(3 * MiB, 3), await check.ChecksumAsync(got.Memory));
    }

    [TestMethod]
    public async Task A_node_that_leases_no_ranges_refuses_them_and_the_client_allocates_with_round_trips()
    {
        await using var h = await StartAsync(o => o.MaxArenaBytes = 0);
        var producer = await Connect(h, arenaBytes: MiB);
        var buffer = await producer.AllocateAsync(1000);
        var again = await producer.AllocateAsync(1000);
        Assert.AreEqual(1, producer.Arena!.Leases, "asked once, refused, not asked again");
        Assert.AreEqual(0L, Stats(h).ArenaLeasedBytes);
        await buffer.DisposeAsync();
        await again.DisposeAsync();
        await producer.FlushAsync();
        Assert.AreEqual(0L, Stats(h).InUseBytes);
    }

    // Hostile frames, written by hand: each is refused with its code, registers nothing, and the session goes on.

    private uint _sequence;

    /// <summary>The next arena id of <paramref name="client"/>'s session (as its library draws them: TubeId.ForArena).</summary>
    private TubeId NextId(TubeClient client) => TubeId.ForArena(client.SessionId, ++_sequence);

    private static async Task<ArenaLeaseOk> LeaseAsync(TubeClient client, long length) =>
        Payload.Read<ArenaLeaseOk>(await client.CallRawAsync(FrameType.ArenaLease, new PayloadWriter().I64(length).I32(0)));

    private static Task<byte[]> CarveAsync(TubeClient client, long range, TubeId id, long offset, long length) =>
        client.CallRawAsync(FrameType.ArenaCarve, new PayloadWriter().I64(range).Id(id).I64(offset).I64(length));

    private static Task<byte[]> PublishAsync(TubeClient client, TubeId id) =>
        client.CallRawAsync(FrameType.Publish, new PayloadWriter().Id(id).I32(1).I64(0).U8(0));

    private static async Task<TubeError> RefusedAsync(Func<Task> call, string what) =>
        (await Assert.ThrowsAsync<TubeException>(call, what)).Error;

    [TestMethod]
    public async Task Hostile_carves_out_of_range_overlapping_or_of_another_sessions_range_are_refused_and_register_nothing()
    {
        await using var h = await StartAsync();
        var client = await Connect(h);
        var other = await Connect(h);
        var range = await LeaseAsync(client, MiB);
        Assert.AreEqual(MiB, range.Mapping.Length);
        var first = NextId(client);
        await CarveAsync(client, range.Range, first, 0, 4096);
        int blocks = Stats(h).Blocks;

        (long Range, long Offset, long Length, TubeError Error, string What)[] refused =
        [
            (range.Range, MiB - 256, 512, TubeError.BadRequest, "past the end of the range"),
            (range.Range, -256, 512, TubeError.BadRequest, "before its start"),
            (range.Range, long.MaxValue - 255, 512, TubeError.BadRequest, "an offset that wraps"),
            (range.Range, 128, 256, TubeError.BadRequest, "unaligned"),
            (range.Range, 0, 2 * MiB, TubeError.BadRequest, "larger than the range"),
            (range.Range, 0, -1, TubeError.BadRequest, "a negative length"),
            (range.Range, 256, 256, TubeError.BadRequest, "inside a live piece"),
            (range.Range + 1000, 8192, 256, TubeError.NotLeased, "a range number never leased"),
        ];
        foreach (var (number, offset, length, error, what) in refused)
        {
            var id = NextId(client);
            Assert.AreEqual(error, await RefusedAsync(() => CarveAsync(client, number, id, offset, length), what), what);
            Assert.AreEqual(TubeError.NotFound, await RefusedAsync(() => client.WhereAsync(id), what), $"{what}: nothing registered");
        }

        Assert.AreEqual(TubeError.NotLeased, await RefusedAsync(() => CarveAsync(other, range.Range, TubeId.ForArena(other.SessionId, 1), 8192, 256), "another session's range"), "another session's range is not its own");
        var otherRange = await LeaseAsync(other, MiB);
        Assert.AreEqual(TubeError.BadRequest, await RefusedAsync(() => CarveAsync(other, otherRange.Range, NextId(client), 8192, 256), "an id of another session"), "a carve names an id of its own session only");
        Assert.AreEqual(TubeError.BadRequest, await RefusedAsync(() => CarveAsync(client, range.Range, TubeId.NewId(), 8192, 256), "a random id"), "a carve's id is an arena id");
        Assert.AreEqual(TubeError.BadRequest, await RefusedAsync(() => CarveAsync(client, range.Range, first, 8192, 256), "an id in use"), "an id carved already");
        Assert.AreEqual(TubeError.BadRequest, await RefusedAsync(() => CarveAsync(client, range.Range, TubeId.ForArena(client.SessionId, 1), 8192, 256), "a sequence not above the last"), "sequences only go up");
        Assert.AreEqual(blocks + 1, Stats(h).Blocks, "no refused carve took a block (the one more is the other client's range)");

        // The session goes on: the legitimate piece publishes once, a second publish is refused.
        await PublishAsync(client, first);
        Assert.AreEqual(TubeError.AccessDenied, await RefusedAsync(() => PublishAsync(client, first), "published twice"));
        Assert.AreEqual(0, await other.WhereAsync(first), "the published piece is the workflow's");
        h.Node.PoolOf(0).CheckInvariants();
    }

    [TestMethod]
    public async Task Returning_a_range_while_pieces_live_gives_back_only_the_rest_and_the_pieces_stay_readable()
    {
        await using var h = await StartAsync();
        var client = await Connect(h);
        var consumer = await Connect(h);
        var range = await LeaseAsync(client, 2 * MiB);
        var published = NextId(client);
        var unpublished = NextId(client);
        await CarveAsync(client, range.Range, published, 0, MiB);
        await CarveAsync(client, range.Range, unpublished, MiB, 4096);

        // The producer writes its piece through the range's mapping, as the client library does.
        var pool = h.Node.PoolOf(0);
        var slab = pool.SlabBuffer(range.Mapping.Slab, range.Mapping.Generation).Slice(range.Mapping.Offset, MiB);
        using (var stream = h.Node.Gpus.Devices[0].CreateStream())
        {
            await stream.FillPatternAsync(slab, 41);
            await stream.SynchronizeAsync();
        }

        await PublishAsync(client, published);
        await client.CallRawAsync(FrameType.ArenaReturn, new PayloadWriter().I64(range.Range));
        var stats = Stats(h);
        Assert.AreEqual(0L, stats.ArenaLeasedBytes, "returned");
        Assert.AreEqual(MiB + 4096, stats.InUseBytes, "only the two live pieces stay");
        Assert.AreEqual(TubeError.NotLeased, await RefusedAsync(() => client.CallRawAsync(FrameType.ArenaReturn, new PayloadWriter().I64(range.Range)), "returned twice"));
        Assert.AreEqual(TubeError.NotLeased, await RefusedAsync(() => CarveAsync(client, range.Range, NextId(client), MiB + 8192, 256), "carved after the return"));

        await using (var got = await consumer.GetAsync(published))
        {
            using var check = got.Device.CreateStream();
            Assert.AreEqual(PoolHarness.Expected(MiB, 41), await check.ChecksumAsync(got.Memory), "the published piece outlives its range, bytes intact");
        }

        await client.CallRawAsync(FrameType.Release, new PayloadWriter().Id(unpublished)); // the producer drops its unpublished piece
        await consumer.FlushAsync();
        Assert.AreEqual(0L, Stats(h).InUseBytes, "each piece gave its own bytes back");
        pool.CheckInvariants();
    }

    /// <summary>
    /// Leases sent at once past the per-connection limit: each counts from the moment it is asked for,
    /// so those past the limit are refused before a byte is allocated, and none leaks (the session's
    /// end leaves the pool empty).
    /// </summary>
    [TestMethod]
    public async Task Leases_sent_at_once_past_the_limit_are_refused_and_leak_nothing()
    {
        await using var h = await StartAsync(o => { o.MaxArenaBytes = MiB; o.MaxArenaRangesPerSession = 2; });
        var client = await Connect(h);
        var leases = Enumerable.Range(0, 12).Select(_ => Task.Run(() => LeaseAsync(client, MiB))).ToList();
        try
        {
            await Task.WhenAll(leases);
        }
        catch (TubeException)
        {
            // some are refused: counted below
        }

        Assert.AreEqual(2, leases.Count(t => t.IsCompletedSuccessfully), "exactly the limit leased");
        Assert.IsTrue(leases.Where(t => t.IsFaulted).All(t => t.Exception!.InnerException is TubeException { Error: TubeError.BadRequest }), "the rest refused for the limit");
        Assert.AreEqual(2 * MiB, Stats(h).ArenaLeasedBytes, "no range beyond the two held");
        var ended = h.SessionEnded(client.SessionId);
        await client.DisposeAsync();
        await ended.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.AreEqual(0L, Stats(h).InUseBytes, "nothing left in the pool once the session ended");
    }

    /// <summary>
    /// Many threads allocating from one client's arena at once, through several used-up ranges: the
    /// node sees the carves in sequence and each range's return after its carves, so every
    /// allocation publishes and reads back with its own bytes, and no one-way refusal is waiting.
    /// </summary>
    [TestMethod]
    public async Task Allocations_from_many_threads_at_once_all_land_with_their_own_bytes()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await StartAsync();
        var producer = await Connect(h, arenaBytes: 256 << 10);
        var consumer = await Connect(h);
        var seeds = Enumerable.Range(0, 48).Select(_ => (ulong)random.NextInt64()).ToArray();
        var lengths = Enumerable.Range(0, 48).Select(_ => (long)random.Next(1, 60 << 10)).ToArray();
        var ids = await Task.WhenAll(Enumerable.Range(0, 48).Select(i => Task.Run(async () =>
        {
            var buffer = await producer.AllocateAsync(lengths[i]);
            using var stream = buffer.Device.CreateStream();
            await stream.FillPatternAsync(buffer.Memory, seeds[i]);
            return await producer.PublishAsync(buffer, stream);
        })));

        await producer.FlushAsync(); // throws if the node refused any carve, publish or return
        Assert.IsGreaterThan(1, producer.Arena!.Leases, "the allocations went through more than one range");
        for (int i = 0; i < ids.Length; i++)
        {
            await using var got = await consumer.GetAsync(ids[i]);
            using var check = got.Device.CreateStream();
            Assert.AreEqual(PoolHarness.Expected(lengths[i], seeds[i]), await check.ChecksumAsync(got.Memory), $"allocation {i}");
        }
    }

    [TestMethod]
    public async Task Ranges_beyond_the_nodes_limits_are_refused()
    {
        await using var h = await StartAsync(o => { o.MaxArenaBytes = 2 * MiB; o.MaxArenaRangesPerSession = 2; });
        var client = await Connect(h);
        Assert.AreEqual(TubeError.BadRequest, await RefusedAsync(() => LeaseAsync(client, 2 * MiB + 1), "over MaxArenaBytes"));
        Assert.AreEqual(TubeError.BadRequest, await RefusedAsync(() => LeaseAsync(client, 0), "empty"));
        await LeaseAsync(client, MiB);
        await LeaseAsync(client, MiB);
        Assert.AreEqual(TubeError.BadRequest, await RefusedAsync(() => LeaseAsync(client, MiB), "a third range"));
        Assert.AreEqual(2 * MiB, Stats(h).ArenaLeasedBytes);
        var ended = h.SessionEnded(client.SessionId);
        await client.DisposeAsync();
        await ended.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.AreEqual(0L, Stats(h).InUseBytes, "the session's end returns its ranges");
    }
}

[TestClass]
public sealed class InProcessArenaTests : ArenaContractTests
{
    private protected override bool InProcess => true;
}

[TestClass]
public sealed class SocketArenaTests : ArenaContractTests
{
    private protected override bool InProcess => false;
}

[TestClass]
public sealed class RingArenaTests : ArenaContractTests
{
    private protected override bool InProcess => false;

    private protected override int ControlRingBytes => 64 << 10;
}
