using FaaSTube.Channels;
using FaaSTube.Channels.Protocol;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// PutWhole and GetWhole (docs/protocol.md, "One request for data that fits"): data that fits a
/// window slot is put and got in one request each, on every local transport, with the bytes intact;
/// longer data takes the parts; and a whole request that fails, whatever its fields, leaves nothing
/// held and loses nothing of the data it named.
/// </summary>
public abstract class OneRequestTests : PerTransportTests
{
    [TestMethod]
    public async Task Data_that_fits_a_slot_is_put_and_got_in_one_request_each_and_longer_data_in_parts()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var client = await Connect(h);
        int requests = 0;
        h.Node.RequestStarted += _ => Interlocked.Increment(ref requests);
        int slot = client.WindowSlotLength;
        foreach (int size in new[] { 1, 2, 4095, slot - 1, slot, random.Next(1, slot), slot + 1, 3 * slot + random.Next(1, slot) })
        {
            var data = random.Bytes(size);
            await client.FlushAsync();
            Volatile.Write(ref requests, 0);
            var id = await client.PutAsync(data);
            int putRequests = Volatile.Read(ref requests);
            var back = new byte[size];
            await client.FlushAsync(); // the last Get's one-way Release (longer data) is applied before the count starts
            Volatile.Write(ref requests, 0);
            Assert.AreEqual(size, await client.GetAsync(id, back));
            int getRequests = Volatile.Read(ref requests);
            CollectionAssert.AreEqual(data, back, $"{size} bytes: the same bytes back");
            if (size <= slot)
            {
                Assert.AreEqual(1, putRequests, $"{size} bytes: the Put is one request");
                Assert.AreEqual(1, getRequests, $"{size} bytes: the Get is one request, its lease released by the node");
            }
            else
            {
                Assert.IsGreaterThan(2, putRequests, $"{size} bytes: PutBegin, parts and PutCommit");
                Assert.IsGreaterThan(1, getRequests, $"{size} bytes: a GetWhole that comes back leased, then parts");
            }
        }

        // A rented window buffer is put in one request too, whatever its length.
        var bytes = random.Bytes(client.MaxWindowBufferLength);
        var buffer = await client.RentWindowAsync(bytes.Length);
        bytes.CopyTo(buffer.Memory);
        await client.FlushAsync(); // the last Get's one-way Release is applied before the count starts
        Volatile.Write(ref requests, 0);
        var whole = await client.PutAsync(buffer);
        Assert.AreEqual(1, Volatile.Read(ref requests), "a window buffer of the whole window: one PutWhole");
        var got = new byte[bytes.Length];
        await client.GetAsync(whole, got);
        CollectionAssert.AreEqual(bytes, got);

        await client.FlushAsync();
        Assert.AreEqual(0, h.Node.PoolOf(0).GetStatistics().InUseBytes, "each datum had one consumer, which got it");
        Assert.AreEqual(0, client.WindowSlotsInUse, "every slot went back");
    }

    [TestMethod]
    public async Task A_whole_request_that_fails_leaves_nothing_and_loses_nothing()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var client = await Connect(h);
        var other = await Connect(h, workflow: "other");
        int window = client.WindowMemory.Length;
        var data = random.Bytes(8192);
        var id = await client.PutAsync(data);
        var theirs = await other.PutAsync(data);
        long inUse = h.Node.PoolOf(0).GetStatistics().InUseBytes;
        int entries = h.Node.Directory.All.Count();

        // PutWhole: the range, the SLO, the consumers and the TTL are each refused, and nothing stays.
        random.Bytes(4096).CopyTo(client.WindowMemory);
        var puts = new (string Why, PayloadWriter Frame)[]
        {
            ("a range past the window", new PayloadWriter().I32(4096).I32(0).I32(window - 100).I64(0).I32(1).I64(0).U8(0)),
            ("a negative offset", new PayloadWriter().I32(4096).I32(0).I32(-4096).I64(0).I32(1).I64(0).U8(0)),
            ("no bytes", new PayloadWriter().I32(0).I32(0).I32(0).I64(0).I32(1).I64(0).U8(0)),
            ("more than the window", new PayloadWriter().I32(window + 1).I32(0).I32(0).I64(0).I32(1).I64(0).U8(0)),
            ("no such GPU", new PayloadWriter().I32(4096).I32(7).I32(0).I64(0).I32(1).I64(0).U8(0)),
            ("a negative SLO (refused after the allocation)", new PayloadWriter().I32(4096).I32(0).I32(0).I64(-1).I32(1).I64(0).U8(0)),
            ("no consumer (refused after the copy)", new PayloadWriter().I32(4096).I32(0).I32(0).I64(0).I32(0).I64(0).U8(0)),
            ("a TTL over the node's most (refused after the copy)", new PayloadWriter().I32(4096).I32(0).I32(0).I64(0).I32(1).I64(long.MaxValue).U8(0)),
        };
        foreach (var (why, frame) in puts)
        {
            var refused = await Assert.ThrowsExactlyAsync<TubeException>(() => client.CallRawAsync(FrameType.PutWhole, frame), why);
            TestContext.WriteLine($"PutWhole, {why}: {refused.Error} {refused.Message}");
            Assert.AreEqual(TubeError.BadRequest, refused.Error, why);
            Assert.AreEqual(entries, h.Node.Directory.All.Count(), $"{why}: no entry is left");
            Assert.AreEqual(inUse, h.Node.PoolOf(0).GetStatistics().InUseBytes, $"{why}: no memory is held");
        }

        // GetWhole: a range outside the window takes no lease; another workflow's id is not found, as a made-up one.
        var outside = await Assert.ThrowsExactlyAsync<TubeException>(() => client.CallRawAsync(FrameType.GetWhole, new PayloadWriter().Id(id).I32(window - 1024).I32(2048).I32(0)));
        Assert.AreEqual(TubeError.BadRequest, outside.Error);
        var foreign = await Assert.ThrowsExactlyAsync<TubeException>(() => client.CallRawAsync(FrameType.GetWhole, new PayloadWriter().Id(theirs).I32(0).I32(8192).I32(0)));
        var madeUp = TubeId.NewId();
        var missing = await Assert.ThrowsExactlyAsync<TubeException>(() => client.CallRawAsync(FrameType.GetWhole, new PayloadWriter().Id(madeUp).I32(0).I32(8192).I32(0)));
        Assert.AreEqual(TubeError.NotFound, foreign.Error);
        Assert.AreEqual(missing.Message.Replace(madeUp.ToString(), "ID", StringComparison.Ordinal), foreign.Message.Replace(theirs.ToString(), "ID", StringComparison.Ordinal), "no oracle of another workflow's ids");

        // A GetWhole whose most is shorter than the data copies nothing and holds the lease, as a Get: the Release is the consumer's.
        client.WindowMemory.Span.Clear();
        var leased = new PayloadReader(await client.CallRawAsync(FrameType.GetWhole, new PayloadWriter().Id(id).I32(0).I32(4096).I32(0)));
        Assert.AreEqual(8192L, leased.I64(), "the data's length");
        Assert.IsFalse(client.WindowMemory.Span.ContainsAnyExcept((byte)0), "nothing was copied");
        await client.CallRawAsync(FrameType.Release, new PayloadWriter().Id(id));
        Assert.IsTrue(h.Node.Directory.TryFind("wf", id) is null, "the lease was held, and its Release was the one consumer");

        var back = new byte[data.Length];
        await other.GetAsync(theirs, back);
        CollectionAssert.AreEqual(data, back, "the other workflow's data is whole");
        await client.FlushAsync();
        Assert.AreEqual(0, h.Node.PoolOf(0).GetStatistics().InUseBytes, "nothing is held");
    }
}

[TestClass]
public sealed class InProcessOneRequestTests : OneRequestTests
{
    private protected override bool InProcess => true;
}

[TestClass]
public sealed class SocketOneRequestTests : OneRequestTests
{
    private protected override bool InProcess => false;
}

[TestClass]
public sealed class RingOneRequestTests : OneRequestTests
{
    private protected override bool InProcess => false;

    private protected override int ControlRingBytes => 64 << 10;
}
