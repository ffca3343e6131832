using FaaSTube.Channels;
using FaaSTube.Kernels;
using FaaSTube.Memory;
using FaaSTube.Tests.Support;
using static FaaSTube.Tests.Support.PoolHarness;

namespace FaaSTube.Tests.Memory;

/// <summary>
/// The cache's value-based eviction (src/FaaSTube/Memory/EvictionOrder.cs, CacheValue.cs): cached
/// objects go before intermediate data, the least valuable (requests x reload cost / bytes) first, and
/// come back byte-identical on use; through the node, a cached named object gives way to a workflow's
/// Put and is restored on its next Get.
/// </summary>
[TestClass]
public sealed class CacheEvictionTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task Under_pressure_the_least_valuable_model_goes_first_and_intermediate_data_stays()
    {
        await using var h = new PoolHarness(o => o.MaxBytes = 4 * MiB);
        var intermediate = await h.Pool.AllocateAsync(MiB, new BlockOptions { Function = "f" }); // the least recently used, no hint: the old rule's first victim
        await h.WriteAsync(intermediate, 1);
        h.Clock.Advance(TimeSpan.FromSeconds(1));
        var cold = await ModelAsync(h, 2, reloadSeconds: 0.01, hits: 0);     // value 0.01 / MiB
        var hot = await ModelAsync(h, 3, reloadSeconds: 0.01, hits: 9);      // 10 requests: 0.1 / MiB
        var costly = await ModelAsync(h, 4, reloadSeconds: 10, hits: 0);    // a 10 s loader: 10 / MiB

        var order = new List<string>();
        var named = new Dictionary<PoolBlock, string> { [intermediate] = "intermediate", [cold] = "cold", [hot] = "hot", [costly] = "costly" };
        var newcomers = new List<PoolBlock>();
        for (int i = 0; i < 3; i++)
        {
            newcomers.Add(await h.Pool.AllocateAsync(MiB, new BlockOptions { Function = "g" }));
            order.Add(named.Single(p => !p.Key.IsResident && !order.Contains(p.Value)).Value);
        }

        CollectionAssert.AreEqual(new[] { "cold", "hot", "costly" }, order, "models by value, least first");
        Assert.IsTrue(intermediate.IsResident, "intermediate data won over every cached model");
        newcomers.ForEach(b => h.Pool.Release(b, default));

        Assert.IsTrue(await h.HoldsAsync(cold, 2), "the cold model came back byte-identical");
        Assert.IsTrue(await h.HoldsAsync(hot, 3));
        Assert.IsTrue(await h.HoldsAsync(costly, 4));
        Assert.IsTrue(await h.HoldsAsync(intermediate, 1));
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task A_cached_named_object_gives_way_to_a_put_and_is_restored_identical_on_its_next_get()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(configure: o => o.Pool.MaxBytes = 32 << 20);
        var client = await h.ConnectAsync(inProcess: false, controlRingBytes: 0);
        var model = random.Bytes(15 << 20);
        await client.PutNamedAsync("model", model); // cacheable by default
        var first = await client.PutAsync(random.Bytes(15 << 20));

        var second = await client.PutAsync(random.Bytes(15 << 20)); // no room left: the model goes to host memory, not the intermediate data
        Assert.AreEqual(1L, h.Node.PoolOf(0).GetStatistics().Evictions, "one eviction made the room");

        await using (var back = await client.GetNamedAsync("model"))
        {
            Assert.AreEqual(TubePath.Restored, back.Path);
            using var stream = back.Device.CreateStream();
            Assert.AreEqual(DataChecksum.Compute(model), await stream.ChecksumAsync(back.Memory), "restored byte-identical");
        }

        await client.DeleteAsync(first);
        await client.DeleteAsync(second);
    }

    [TestMethod]
    public async Task A_namespaces_cached_models_make_room_for_a_workflows_put_and_come_back_identical()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(configure: o =>
        {
            o.Pool.MaxBytes = 48 << 20; // three 16 MiB slabs
            o.AuthorizeNamespace = (_, ns) => ns == "models";
        });
        var client = await h.ConnectAsync(inProcess: false, controlRingBytes: 0);
        var models = new NamedOptions { Namespace = "models" };
        var weights = Enumerable.Range(0, 3).Select(_ => random.Bytes(15 << 20)).ToArray();
        for (int i = 0; i < weights.Length; i++)
        {
            await client.PutNamedAsync($"m{i}", weights[i], models); // the namespace's partition takes every slab
        }

        var intermediate = random.Bytes(15 << 20);
        var id = await client.PutAsync(intermediate); // the workflow's partition needs a slab: a model's slab is emptied and given back
        Assert.IsGreaterThanOrEqualTo(1L, h.Node.PoolOf(0).GetStatistics().Evictions, "a cached model made the room");

        for (int i = 0; i < weights.Length; i++)
        {
            await using var back = await client.GetNamedAsync($"m{i}", models);
            using var stream = back.Device.CreateStream();
            Assert.AreEqual(DataChecksum.Compute(weights[i]), await stream.ChecksumAsync(back.Memory), $"model {i} byte-identical ({back.Path})");
        }

        var read = new byte[intermediate.Length];
        await client.GetAsync(id, read.AsMemory());
        Assert.AreEqual(DataChecksum.Compute(intermediate), DataChecksum.Compute(read), "the intermediate data is intact");
    }

    [TestMethod]
    public async Task With_nowhere_to_spill_the_least_valuable_model_is_dropped_and_intermediate_data_stays()
    {
        await using var h = new PoolHarness(o => { o.MaxBytes = 3 * MiB; o.HostSpillBytes = 0; o.MaxSpillFileBytes = 0; o.AllocationTimeout = TimeSpan.FromSeconds(30); }); // the asker waits for the drop it caused
        var intermediate = await h.Pool.AllocateAsync(MiB, new BlockOptions { Function = "f" });
        await h.WriteAsync(intermediate, 1);
        var cold = await ModelAsync(h, 2, reloadSeconds: 0.01, hits: 0);
        var hot = await ModelAsync(h, 3, reloadSeconds: 0.01, hits: 5);
        var dropped = new List<string>();
        cold.Cache!.Drop = () => { lock (dropped) { dropped.Add("cold"); } h.Pool.Release(cold, default); };
        hot.Cache!.Drop = () => { lock (dropped) { dropped.Add("hot"); } h.Pool.Release(hot, default); };

        var newcomer = await h.Pool.AllocateAsync(MiB, new BlockOptions { Function = "g" }); // no spill room: a model must go for good

        CollectionAssert.AreEqual(new[] { "cold" }, dropped, "the least valuable model was dropped, once");
        Assert.IsTrue(cold.IsFreed);
        Assert.IsTrue(hot.IsResident && intermediate.IsResident && newcomer.IsResident);
        Assert.IsTrue(await h.HoldsAsync(intermediate, 1), "intermediate data intact");
        Assert.IsTrue(await h.HoldsAsync(hot, 3));
        h.Pool.CheckInvariants();
    }

    [TestMethod]
    public async Task A_dropped_named_object_is_loaded_again_by_the_next_get_or_load()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(configure: o => { o.Pool.MaxBytes = 32 << 20; o.Pool.HostSpillBytes = 0; o.Pool.MaxSpillFileBytes = 0; });
        var client = await h.ConnectAsync(inProcess: false, controlRingBytes: 0);
        var model = random.Bytes(15 << 20);
        int loads = 0;
        var loader = NamedLoader.FromBytes(_ =>
        {
            Interlocked.Increment(ref loads);
            return ValueTask.FromResult<ReadOnlyMemory<byte>>(model);
        });
        await (await client.GetOrLoadAsync("model", loader)).DisposeAsync();
        var first = await client.PutAsync(random.Bytes(15 << 20));

        var second = await client.PutAsync(random.Bytes(15 << 20)); // nowhere to spill: the model is dropped, the Put does not fail
        var gone = await Assert.ThrowsAsync<TubeException>(async () => await client.WhereNamedAsync("model"));
        Assert.AreEqual(TubeError.NotFound, gone.Error, "the dropped model's name went with it");
        await client.DeleteAsync(first); // room for the reload

        await using (var back = await client.GetOrLoadAsync("model", loader))
        {
            using var stream = back.Device.CreateStream();
            Assert.AreEqual(DataChecksum.Compute(model), await stream.ChecksumAsync(back.Memory));
        }

        Assert.AreEqual(2, Volatile.Read(ref loads), "loaded again after the drop");
        await client.DeleteAsync(second);
    }

    /// <summary>
    /// The reload cost a client claims at commit is bounded by what the node saw (the time since the
    /// named Put began): claiming an hour after two seconds cannot make an object the last to go.
    /// </summary>
    [TestMethod]
    public async Task A_claimed_reload_cost_is_bounded_by_the_time_the_node_saw()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        await using var h = await NodeHarness.StartAsync(time: time);
        var client = await h.ConnectAsync(inProcess: true);
        var begun = FaaSTube.Channels.Protocol.Payload.Read<FaaSTube.Channels.Protocol.Messages.PutBeginOk>(
            await client.CallRawAsync(FaaSTube.Channels.Protocol.FrameType.NamedPutBegin, new FaaSTube.Channels.Protocol.PayloadWriter().Str("").Str("claimed").I64(4096).I32(0)));
        time.Advance(TimeSpan.FromSeconds(2));
        await client.CallRawAsync(FaaSTube.Channels.Protocol.FrameType.NamedCommit, new FaaSTube.Channels.Protocol.PayloadWriter().Id(begun.Id).U8(1).I64(TimeSpan.FromHours(1).Ticks));
        var cache = h.Node.Names.Current(new FaaSTube.Channels.Names.NameKey("wf", "claimed")).Entry.Block.Cache!;
        Assert.IsLessThanOrEqualTo(2.0 + 1e-6, cache.ReloadSeconds, $"an hour claimed, two seconds seen: {cache.ReloadSeconds} s");
        Assert.IsGreaterThan(0.0, cache.ReloadSeconds);
    }

    [TestMethod]
    public async Task A_named_objects_requests_decay_on_the_nodes_clock_by_its_CacheHalfLife()
    {
        var random = Seeds.Create(TestContext);
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        await using var h = await NodeHarness.StartAsync(configure: o => o.CacheHalfLife = TimeSpan.FromMinutes(30), time: time);
        var client = await h.ConnectAsync(inProcess: true);
        await client.PutNamedAsync("m", random.Bytes(64 << 10));
        for (int i = 0; i < 7; i++)
        {
            await (await client.GetNamedAsync("m")).DisposeAsync();
        }

        var cache = h.Node.Names.Current(new FaaSTube.Channels.Names.NameKey("wf", "m")).Entry.Block.Cache!;
        Assert.AreEqual(8.0, cache.Requests, 1e-9, "its Put and seven Gets");
        time.Advance(TimeSpan.FromMinutes(30));
        Assert.AreEqual(4.0, cache.Requests, 1e-9, "one half-life later they weigh half");
        time.Advance(TimeSpan.FromMinutes(60));
        Assert.AreEqual(1.0, cache.Requests, 1e-9, "three half-lives: an eighth");
    }

    [TestMethod]
    [DataRow(true, DisplayName = "with a half-life of 10 minutes: the model hot an hour ago goes")]
    [DataRow(false, DisplayName = "without decay: the model hot now goes (the old counts win)")]
    public async Task Request_counts_decay_so_a_model_hot_an_hour_ago_but_cold_now_loses_to_one_hot_now(bool decays)
    {
        await using var h = new PoolHarness(o => o.MaxBytes = 2 * MiB);
        var decay = new CacheDecay(h.Clock, decays ? TimeSpan.FromMinutes(10) : null);
        var hotThen = await ModelAsync(h, 1, reloadSeconds: 1, hits: 30, decay);   // 31 requests, an hour ago
        h.Clock.Advance(TimeSpan.FromHours(1));
        var hotNow = await ModelAsync(h, 2, reloadSeconds: 1, hits: 2, decay);     // 3 requests, now

        if (decays)
        {
            // hot-then's requests are 3602 s old (an hour and the clock's steps), hot-now's 1 s: each halves every 600 s.
            double then = 31 * Math.Pow(2, -3602 / 600.0);
            Assert.AreEqual(then, hotThen.Cache!.Requests, 1e-9, "six half-lives: 31 requests weigh about 31/64 now");
            Assert.AreEqual(3 * Math.Pow(2, -1 / 600.0), hotNow.Cache!.Requests, 1e-9);
            hotThen.Cache.Hit();
            Assert.AreEqual(then + 1, hotThen.Cache.Requests, 1e-9, "a request now adds a whole one to the decayed count");
        }

        var newcomer = await h.Pool.AllocateAsync(MiB, new BlockOptions { Function = "g" });

        Assert.AreEqual(decays, !hotThen.IsResident, "the model hot an hour ago was evicted");
        Assert.AreEqual(decays, hotNow.IsResident, "the model hot now stayed");
        h.Pool.Release(newcomer, default);
        Assert.IsTrue(await h.HoldsAsync(decays ? hotThen : hotNow, decays ? 1UL : 2UL), "the evicted model comes back byte-identical");
    }

    private static async Task<PoolBlock> ModelAsync(PoolHarness h, ulong seed, double reloadSeconds, int hits, CacheDecay? decay = null)
    {
        var block = await h.Pool.AllocateAsync(MiB, new BlockOptions { Function = "model" });
        await h.WriteAsync(block, seed);
        block.Cache = new CacheValue(reloadSeconds, decay ?? CacheDecay.None);
        for (int i = 0; i < hits; i++)
        {
            block.Cache.Hit();
        }

        h.Clock.Advance(TimeSpan.FromSeconds(1)); // later models are used more recently: recency would pick the reverse order
        return block;
    }
}
