using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Kernels;
using FaaSTube.Tests.Support;
using Microsoft.Extensions.Time.Testing;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// The model cache's account, loads on the GPU, the load timeout and named reads to host memory, through
/// a node over the socket with the control ring (<see cref="RingNamedCacheTests"/>), without it
/// (<see cref="SocketNamedCacheTests"/>) and in process (<see cref="InProcessNamedCacheTests"/>).
/// </summary>
public abstract class NamedCacheTests : PerTransportTests
{
    private const int MiB = 1 << 20;

    [TestMethod]
    public async Task A_workflows_cached_models_never_make_its_own_puts_fail_and_come_back_identical()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(configure: o =>
        {
            o.Pool.SlabBytes = 4 * MiB;
            o.Pool.MaxBytes = 12 * MiB;          // three slabs: the models' two and one more
            o.Pool.MaxPartitionBytes = 8 * MiB;  // the models alone would fill the workflow's quota
        });
        var client = await Connect(h);
        var pool = h.Node.PoolOf(0);
        var models = Enumerable.Range(0, 4).Select(_ => random.Bytes(2 * MiB)).ToArray();
        for (int i = 0; i < models.Length; i++)
        {
            await client.PutNamedAsync($"model-{i}", models[i]);
        }

        Assert.AreEqual(8L * MiB, pool.CachedBytes("wf"), "the models are charged to the workflow's cache");
        Assert.AreEqual(0L, pool.QuotaBytes("wf"), "not to its quota");

        var intermediate = new List<(TubeId Id, byte[] Data)>();
        for (int i = 0; i < 4; i++)
        {
            var data = random.Bytes(2 * MiB);
            intermediate.Add((await client.PutAsync(data), data)); // up to the quota, with every model held: none fails
        }

        Assert.AreEqual(8L * MiB, pool.QuotaBytes("wf"));
        Assert.IsGreaterThanOrEqualTo(2L, pool.GetStatistics().Evictions, "models went to host memory to make room");

        for (int i = 0; i < models.Length; i++)
        {
            await using var model = await client.GetNamedAsync($"model-{i}");
            Assert.AreEqual(DataChecksum.Compute(models[i]), await ChecksumAsync(model), $"model-{i} is back byte-identical ({model.Path})");
        }

        foreach (var (id, data) in intermediate)
        {
            await using var back = await client.GetAsync(id, 0);
            Assert.AreEqual(DataChecksum.Compute(data), await ChecksumAsync(back), "the intermediate data is intact");
        }
    }

    [TestMethod]
    public async Task A_scopes_cache_is_bounded_its_least_valuable_objects_are_dropped_and_readers_keep_it_within_the_bound()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(configure: o =>
        {
            o.Pool.MaxPartitionBytes = 8 * MiB;
            o.Pool.MaxPartitionCacheBytes = 4 * MiB; // two models of 2 MiB
        });
        var client = await Connect(h);
        var pool = h.Node.PoolOf(0);
        var hot = random.Bytes(2 * MiB);
        await client.PutNamedAsync("hot", hot);
        await client.PutNamedAsync("cold", random.Bytes(2 * MiB));
        for (int i = 0; i < 200; i++)
        {
            await (await client.GetNamedAsync("hot")).DisposeAsync(); // 201 requests against 1: whatever the puts' measured times, hot is worth more
        }

        var third = random.Bytes(2 * MiB);
        await client.PutNamedAsync("third", third);

        Assert.AreEqual(4L * MiB, pool.CachedBytes("wf"), "the cache holds its bound, no more");
        var dropped = await Assert.ThrowsAsync<TubeException>(async () => await client.WhereNamedAsync("cold"));
        Assert.AreEqual(TubeError.NotFound, dropped.Error, "the least valuable object was dropped for the new one");
        await using var hotHeld = await client.GetNamedAsync("hot");
        await using var thirdHeld = await client.GetNamedAsync("third");
        Assert.AreEqual(DataChecksum.Compute(hot), await ChecksumAsync(hotHeld));

        // Readers hold everything the cache has: a fourth object cannot be made room for, and its refusal leaves nothing behind.
        var full = await Assert.ThrowsAsync<TubeException>(async () => await client.PutNamedAsync("fourth", random.Bytes(2 * MiB)));
        Assert.AreEqual(TubeError.OutOfMemory, full.Error);
        StringAssert.Contains(full.Message, "MaxPartitionCacheBytes");
        await client.FlushAsync();
        Assert.AreEqual(4L * MiB, pool.CachedBytes("wf"));
        Assert.AreEqual(0L, pool.QuotaBytes("wf"), "the refused object's block was freed");

        var id = await client.PutAsync(random.Bytes(8 * MiB)); // the whole quota is still the workflow's intermediate data
        await client.DeleteAsync(id);
        Assert.AreEqual(DataChecksum.Compute(third), await ChecksumAsync(thirdHeld), "dropping made no reader lose its bytes");
    }

    [TestMethod]
    public async Task A_gpu_loader_writes_the_allocation_once_for_sixteen_callers_and_it_becomes_the_version_without_a_host_copy()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var clients = new List<TubeClient>();
        for (int i = 0; i < 16; i++)
        {
            clients.Add(await Connect(h));
        }

        int length = (3 * MiB) + 77;
        ulong seed = (ulong)random.NextInt64();
        var expected = new byte[length];
        DataPattern.Fill(expected, seed);
        int loads = 0;
        int waiting = 0;
        var othersWait = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Node.Names.WaiterArrived += _ =>
        {
            if (Interlocked.Increment(ref waiting) == 15)
            {
                othersWait.TrySetResult();
            }
        };
        var loader = NamedLoader.FromAllocation(length, async (allocation, stream, ct) =>
        {
            Interlocked.Increment(ref loads);
            Assert.IsTrue(allocation.IsWritable);
            Assert.AreEqual((long)length, allocation.Memory.Length);
            await othersWait.Task.WaitAsync(TimeSpan.FromSeconds(60), ct);
            await stream.FillPatternAsync(allocation.Memory, seed, ct); // the fill kernel: the function's own GPU work
        });

        var buffers = await Task.WhenAll(clients.Select(c => Task.Run(() => c.GetOrLoadAsync("llm", loader))));
        try
        {
            Assert.AreEqual(1, Volatile.Read(ref loads), "the loader ran once");
            foreach (var b in buffers)
            {
                Assert.AreEqual(DataChecksum.Compute(expected), await ChecksumAsync(b), "every caller reads the bytes the kernel wrote");
            }

            Assert.AreEqual(0L, clients.Sum(c => c.HostBytesCopied), "no host copy");
        }
        finally
        {
            foreach (var b in buffers)
            {
                await b.DisposeAsync();
            }
        }
    }

    [TestMethod]
    public async Task A_gpu_loader_that_throws_wakes_its_waiters_with_LoadFailed_and_its_allocation_is_not_leaked()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        var first = await Connect(h);
        var waiter = await Connect(h);
        var pool = h.Node.PoolOf(0);
        var waiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Node.Names.WaiterArrived += _ => waiting.TrySetResult();
        var allocated = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var failing = NamedLoader.FromAllocation(2 * MiB, async (allocation, stream, ct) =>
        {
            await stream.FillAsync(allocation.Memory, 7, ct);
            allocated.TrySetResult();
            await waiting.Task.WaitAsync(TimeSpan.FromSeconds(60), ct);
            throw new InvalidOperationException("kernel launch failed");
        });
        var data = random.Bytes(MiB + 3);
        int otherLoads = 0;
        var good = NamedLoader.FromAllocation(data.Length, async (allocation, stream, ct) =>
        {
            Interlocked.Increment(ref otherLoads);
            await stream.CopyAsync(data, allocation.Memory, ct);
        });

        var loading = first.GetOrLoadAsync("vit", failing);
        await allocated.Task.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.AreEqual(2L * MiB, pool.QuotaBytes("wf"), "the allocation is the loader's while it writes");
        var waited = Task.Run(() => waiter.GetOrLoadAsync("vit", good));

        var thrown = await Assert.ThrowsAsync<InvalidOperationException>(async () => await loading);
        Assert.AreEqual("kernel launch failed", thrown.Message);
        var woken = await Assert.ThrowsAsync<TubeException>(async () => await waited);
        Assert.AreEqual(TubeError.LoadFailed, woken.Error);
        StringAssert.Contains(woken.Message, "kernel launch failed");
        await first.FlushAsync();
        Assert.AreEqual(0L, pool.QuotaBytes("wf"), "the failed load's allocation was dropped");
        Assert.AreEqual(0L, pool.GetStatistics().InUseBytes);
        Assert.AreEqual(0, Volatile.Read(ref otherLoads));

        await using var loaded = await waiter.GetOrLoadAsync("vit", good);
        Assert.AreEqual(1, Volatile.Read(ref otherLoads), "the next caller loaded");
        Assert.AreEqual(DataChecksum.Compute(data), await ChecksumAsync(loaded));
    }

    [TestMethod]
    public async Task A_load_that_hangs_past_the_load_timeout_fails_its_waiters_the_next_caller_loads_and_its_late_commit_is_refused()
    {
        var random = Seeds.Create(TestContext);
        var time = new FakeTimeProvider();
        await using var h = await NodeHarness.StartAsync(configure: o => o.LoadTimeout = TimeSpan.FromSeconds(20), time: time); // before the waiter's own wait (the client's PublishWait, 30 s) ends
        var hung = await Connect(h);
        var waiter = await Connect(h);
        var next = await Connect(h);
        var pool = h.Node.PoolOf(0);
        var waiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Node.Names.WaiterArrived += _ => waiting.TrySetResult();
        var timedOut = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Node.Names.LoadTimedOut += _ => timedOut.TrySetResult();
        var hangs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var loaderRuns = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var late = random.Bytes(MiB);
        var stuck = NamedLoader.FromWriter(late.Length, async (writer, ct) =>
        {
            for (int offset = 0; offset < late.Length;)
            {
                await writer.FlushAsync(ct);
                var slot = writer.GetMemory();
                late.AsMemory(offset, slot.Length).CopyTo(slot);
                writer.Advance(slot.Length);
                offset += slot.Length;
            }

            loaderRuns.TrySetResult();
            await hangs.Task; // a live loader that does not commit until the test lets it
        });
        var data = random.Bytes(MiB + 1);
        var good = NamedLoader.FromBytes(_ => ValueTask.FromResult<ReadOnlyMemory<byte>>(data));

        var loading = hung.GetOrLoadAsync("t5", stuck);
        await loaderRuns.Task.WaitAsync(TimeSpan.FromSeconds(60)); // its Put is written, its commit not sent
        var waited = Task.Run(() => waiter.GetNamedAsync("t5"));
        await waiting.Task.WaitAsync(TimeSpan.FromSeconds(60));

        time.Advance(TimeSpan.FromSeconds(19));
        Assert.IsFalse(timedOut.Task.IsCompleted, "not before the timeout");
        time.Advance(TimeSpan.FromSeconds(1));
        await timedOut.Task.WaitAsync(TimeSpan.FromSeconds(60));

        var woken = await Assert.ThrowsAsync<TubeException>(async () => await waited);
        Assert.AreEqual(TubeError.LoadFailed, woken.Error);
        StringAssert.Contains(woken.Message, "LoadTimeout");
        await using (var loaded = await next.GetOrLoadAsync("t5", good))
        {
            Assert.AreEqual(DataChecksum.Compute(data), await ChecksumAsync(loaded), "the next caller loaded it");
        }

        hangs.TrySetResult(); // the late loader commits now: refused
        var refused = await Assert.ThrowsAsync<TubeException>(async () => await loading);
        Assert.AreEqual(TubeError.LoadFailed, refused.Error);
        await using (var still = await waiter.GetNamedAsync("t5"))
        {
            Assert.AreEqual(DataChecksum.Compute(data), await ChecksumAsync(still), "the late commit changed nothing");
        }

        await hung.FlushAsync();
        Assert.AreEqual(0L, pool.QuotaBytes("wf"), "the late version's block was freed");
    }

    [TestMethod]
    public async Task A_named_object_is_read_into_host_memory_with_its_bytes_also_after_eviction()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(configure: o =>
        {
            o.Pool.MaxBytes = 16 << 20;
            o.AuthorizeNamespace = (workflow, ns) => ns == "models" && workflow is "producer" or "cpu";
        });
        var producer = await Connect(h, "producer");
        var cpu = await Connect(h, "cpu");
        var foreign = await Connect(h, "foreign");
        var models = new NamedOptions { Namespace = "models" };
        var data = random.Bytes((5 * MiB) + 3); // more than the 2 MiB window: many parts
        await producer.PutNamedAsync("bert", data, models);

        var host = new byte[data.Length + 10];
        Assert.AreEqual((long)data.Length, await cpu.GetNamedAsync("bert", host, models));
        Assert.AreEqual(DataChecksum.Compute(data), DataChecksum.Compute(host.AsSpan(0, data.Length)));

        var id = await producer.PutAsync(random.Bytes(14 * MiB)); // the model goes to host memory
        Assert.IsGreaterThanOrEqualTo(1L, h.Node.PoolOf(0).GetStatistics().Evictions);
        await producer.DeleteAsync(id);
        Array.Clear(host);
        Assert.AreEqual((long)data.Length, await cpu.GetNamedAsync("bert", host, models));
        Assert.AreEqual(DataChecksum.Compute(data), DataChecksum.Compute(host.AsSpan(0, data.Length)), "restored, then read to host");

        await Assert.ThrowsAsync<ArgumentException>(async () => await cpu.GetNamedAsync("bert", new byte[100], models));
        var denied = await Assert.ThrowsAsync<TubeException>(async () => await foreign.GetNamedAsync("bert", host, models));
        Assert.AreEqual(TubeError.NotFound, denied.Error);
        await cpu.FlushAsync();
        Assert.AreEqual(0, h.Node.Sessions.Sum(s => s.HeldCount), "every read let its version go");
    }
}

[TestClass]
public sealed class InProcessNamedCacheTests : NamedCacheTests
{
    private protected override bool InProcess => true;
}

[TestClass]
public sealed class SocketNamedCacheTests : NamedCacheTests
{
    private protected override bool InProcess => false;
}

[TestClass]
public sealed class RingNamedCacheTests : NamedCacheTests
{
    private protected override bool InProcess => false;

    private protected override int ControlRingBytes => 64 << 10;
}

/// <summary>A GPU loader on a real GPU: the fill kernel writes the allocation, the commit makes it the version, a host read checks it. Inconclusive without CUDA.</summary>
[TestClass]
[TestCategory("Gpu")]
public sealed class CudaNamedLoaderTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task A_gpu_loaders_kernel_writes_the_version_that_a_second_client_and_a_host_read_see()
    {
        if (!FaaSTube.Native.CudaLibrary.IsAvailable)
        {
            Assert.Inconclusive($"No CUDA here: {FaaSTube.Native.CudaLibrary.UnavailableReason}");
        }

        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync(backend: GpuBackend.Cuda);
        var loaderClient = await h.ConnectAsync(inProcess: false);
        var reader = await h.ConnectAsync(inProcess: false);
        int length = (16 << 20) + 5;
        ulong seed = (ulong)random.NextInt64();
        var expected = new byte[length];
        DataPattern.Fill(expected, seed);
        var loader = NamedLoader.FromAllocation(length, (allocation, stream, ct) => stream.FillPatternAsync(allocation.Memory, seed, ct));

        await using (var loaded = await loaderClient.GetOrLoadAsync("cuda-model", loader))
        await using (var read = await reader.GetNamedAsync("cuda-model"))
        {
            using var stream = read.Device.CreateStream();
            Assert.AreEqual(DataChecksum.Compute(expected), await stream.ChecksumAsync(read.Memory), "the kernel's bytes, read on the GPU by another client");
        }

        var host = new byte[length];
        Assert.AreEqual((long)length, await reader.GetNamedAsync("cuda-model", host));
        CollectionAssert.AreEqual(expected, host, "and read to host memory");
    }
}
