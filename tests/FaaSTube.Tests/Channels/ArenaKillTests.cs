using System.Globalization;
using FaaSTube.Channels;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// Issue 11's "a client killed while holding an arena range (the range returns)": a producer process
/// (the TestChild's <c>tube-arena-hold</c>) carves pieces from its range, publishes one and is killed
/// with SIGKILL. Everything is waited for on the node's own report (its session's end), never a sleep.
/// </summary>
[TestClass]
public sealed class ArenaKillTests
{
    private const long MiB = 1 << 20;

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task A_client_killed_holding_an_arena_range_returns_the_range_and_its_published_piece_stays_readable_until_released()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(configure: o => o.Pool.SlabBytes = 32 << 20);
        var pool = h.Node.PoolOf(0);
        long seed = random.NextInt64(1, long.MaxValue);
        long[] sizes = [random.Next(64 << 10, 1 << 20), random.Next(1, 512 << 10), random.Next(1, 512 << 10)];
        long publishedBytes = (sizes[0] + 255) / 256 * 256;

        using var child = ChildProcess.Start("tube-arena-hold", h.Socket, "wf", seed.ToString(CultureInfo.InvariantCulture), string.Join(',', sizes));
        string first = await child.ReadLineAsync();
        var parts = first.Split(' ');
        Assert.AreEqual("session", parts[0], first);
        long session = long.Parse(parts[1], CultureInfo.InvariantCulture);
        Assert.AreEqual("1", parts[3], "three allocations, one range: a single lease");
        string idLine = await child.ReadLineAsync();
        Assert.StartsWith("id ", idLine);
        var id = TubeId.Parse(idLine[3..]);
        Assert.AreEqual("ready", await child.ReadLineAsync());

        var held = pool.GetStatistics();
        Assert.AreEqual(4 * MiB, held.ArenaLeasedBytes, "the child holds its 4 MiB range");
        Assert.AreEqual(4 * MiB, held.InUseBytes, "its pieces lie inside it");
        Assert.AreEqual(4 * MiB - sizes.Sum(s => (s + 255) / 256 * 256), held.ArenaUnusedBytes);

        var ended = h.SessionEnded(session);
        await child.KillAsync();
        await ended.WaitAsync(ChildProcess.Timeout); // the node saw the socket close and cleaned up

        var after = pool.GetStatistics();
        TestContext.WriteLine($"pieces {string.Join(", ", sizes)} bytes; in use with the child alive {held.InUseBytes}, after its kill {after.InUseBytes}");
        Assert.AreEqual(0L, after.ArenaLeasedBytes, "the range returned with the session");
        Assert.AreEqual(publishedBytes, after.InUseBytes, "only the published piece stays: the unpublished pieces and the rest of the range are back in the pool");
        pool.CheckInvariants();

        var consumer = await h.ConnectAsync(inProcess: false);
        await using (var got = await consumer.GetAsync(id))
        {
            using var check = got.Device.CreateStream();
            Assert.AreEqual(PoolHarness.Expected(sizes[0], (ulong)seed), await check.ChecksumAsync(got.Memory), "the published piece outlives its producer with identical bytes");
        }

        await consumer.FlushAsync(); // its one consumer released it
        Assert.AreEqual(0L, pool.GetStatistics().InUseBytes, "released: the pool is empty");
        pool.CheckInvariants();
    }
}
