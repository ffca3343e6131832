using FaaSTube.Channels;
using FaaSTube.Channels.Client;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Devices;
using FaaSTube.Tests.Support;
using Microsoft.Extensions.Time.Testing;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// The client's arena (src/FaaSTube/Channels/Client/ClientArena.cs, ArenaRange.cs) on its own, with
/// leases and returns recorded instead of sent and a fake clock: the bump allocator, the lease ahead at
/// half a range, the return of a used-up range, the idle return, and a node that refuses ranges.
/// </summary>
[TestClass]
public sealed class ClientArenaTests
{
    private const long Range = 1 << 20;

    private sealed class Fake : IAsyncDisposable
    {
        private readonly GpuSystem _gpus = Gpus.Open(GpuBackend.Simulated, simulatedMemory: 64 << 20);
        private readonly DeviceBuffer _slab;
        private readonly ClientMappings _mappings = new(_ => Task.CompletedTask);
        private long _next;

        public Fake(TubeError? refuse = null)
        {
            _slab = _gpus.Devices[0].Allocate(16 << 20);
            Arena = new ClientArena(Range, TimeSpan.FromSeconds(2), Clock, _ =>
            {
                if (refuse is { } error)
                {
                    return Task.FromException<ArenaRange>(new TubeException(error, "no range now"));
                }

                long n = Interlocked.Increment(ref _next);
                var mapping = new Mapping(0, 1, 1, n * Range, Range, []);
                return Task.FromResult(new ArenaRange(n, mapping, _mappings.Use((0, 1, 1), () => (_slab, false))));
            }, range =>
            {
                lock (Returned)
                {
                    Returned.Add(range.Number);
                }

                return ValueTask.CompletedTask;
            });
        }

        public FakeTimeProvider Clock { get; } = new();

        public ClientArena Arena { get; }

        public List<long> Returned { get; } = [];

        public int Mapped => _mappings.Mapped;

        public async ValueTask DisposeAsync()
        {
            Arena.Dispose();
            _slab.Dispose();
            _gpus.Dispose();
            await Task.CompletedTask;
        }
    }

    [TestMethod]
    public async Task Pieces_are_carved_front_to_back_on_the_alignment_and_the_next_range_is_leased_at_half()
    {
        await using var f = new Fake();
        var a = await f.Arena.CarveAsync(0, 1000);
        var b = await f.Arena.CarveAsync(0, 300_000);
        Assert.AreEqual((1L, 0L), (a!.Value.Range.Number, a.Value.Offset));
        Assert.AreEqual(1024L, b!.Value.Offset, "the next piece starts on the 256-byte alignment after the first");
        Assert.AreEqual(1, f.Arena.Leases, "under half used: nothing leased ahead yet");

        var c = await f.Arena.CarveAsync(0, 300_000); // past half
        Assert.AreEqual(1L, c!.Value.Range.Number);
        Assert.AreEqual(2, f.Arena.Leases, "the next range is leased ahead, before it is needed");
        var mapping = c.Value.Range.PieceAt(c.Value.Offset, 300_000);
        Assert.AreEqual(Range + c.Value.Offset, mapping.Offset, "a piece's mapping is its place in the slab");
        Assert.AreEqual(300_000L, mapping.Length);
        Assert.IsEmpty(mapping.Handle, "a piece needs no handle: its range keeps the slab mapped");

        var d = await f.Arena.CarveAsync(0, 600_000); // does not fit what is left: the range ahead takes over
        Assert.AreEqual((2L, 0L), (d!.Value.Range.Number, d.Value.Offset));
        CollectionAssert.AreEqual(new[] { 1L }, f.Returned, "the used-up range went back at once");
        Assert.IsNull(await f.Arena.CarveAsync(0, Range + 1), "larger than a range: the round trip");
    }

    [TestMethod]
    public async Task Ranges_unused_for_the_idle_time_are_returned_and_a_new_allocation_leases_again()
    {
        await using var f = new Fake();
        await f.Arena.CarveAsync(0, 600_000); // the range in use and one ahead
        Assert.AreEqual(2, f.Arena.Held);
        f.Clock.Advance(TimeSpan.FromSeconds(2));
        Assert.IsEmpty(f.Returned, "used within the last idle period: kept");
        f.Clock.Advance(TimeSpan.FromSeconds(2));
        CollectionAssert.AreEquivalent(new[] { 1L, 2L }, f.Returned, "a whole idle period unused: both returned");
        Assert.AreEqual(0, f.Arena.Held);
        Assert.AreEqual(0, f.Mapped, "the returned ranges let their slab mapping go");

        var again = await f.Arena.CarveAsync(0, 10);
        Assert.AreEqual(3L, again!.Value.Range.Number, "the next allocation leases a new range");
    }

    [TestMethod]
    public async Task A_node_that_refuses_ranges_is_asked_once_and_returning_everything_empties_the_arena()
    {
        await using (var refused = new Fake(refuse: TubeError.BadRequest))
        {
            Assert.IsNull(await refused.Arena.CarveAsync(0, 10));
            Assert.IsNull(await refused.Arena.CarveAsync(0, 10));
            Assert.AreEqual(1, refused.Arena.Leases, "a node that leases no such range is asked once");
        }

        await using (var memoryShort = new Fake(refuse: TubeError.OutOfMemory))
        {
            Assert.IsNull(await memoryShort.Arena.CarveAsync(0, 10));
            Assert.IsNull(await memoryShort.Arena.CarveAsync(0, 10));
            Assert.AreEqual(2, memoryShort.Arena.Leases, "memory short now: each allocation takes the round trip and the next asks again");
        }

        await using var f = new Fake();
        await f.Arena.CarveAsync(0, 600_000);
        await f.Arena.ReturnAllAsync();
        CollectionAssert.AreEquivalent(new[] { 1L, 2L }, f.Returned);
        await Assert.ThrowsExactlyAsync<ObjectDisposedException>(async () => await f.Arena.CarveAsync(0, 10), "a disposed arena carves nothing");
    }
}
