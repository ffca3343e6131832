using FaaSTube.Devices;

namespace FaaSTube.Tests.Devices;

/// <summary>The bounded pool that CUDA events and pinned rentals use: what it does not keep, it disposes.</summary>
[TestClass]
public sealed class DisposingObjectPoolTests
{
    [TestMethod]
    public void Returns_beyond_capacity_are_disposed_and_the_kept_ones_are_reused()
    {
        using var pool = new DisposingObjectPool<Item>(() => new Item(), capacity: 2);
        var items = Enumerable.Range(0, 5).Select(_ => pool.Get()).ToArray();

        foreach (var item in items)
        {
            pool.Return(item);
        }

        Assert.AreEqual(2, pool.Count);
        Assert.AreEqual(3, items.Count(i => i.Disposed));
        var again = pool.Get();
        Assert.IsTrue(items.Contains(again) && !again.Disposed, "a kept item is handed out again");
    }

    [TestMethod]
    public void Disposing_the_pool_disposes_idle_items_and_items_returned_later()
    {
        var pool = new DisposingObjectPool<Item>(() => new Item(), capacity: 4);
        var idle = pool.Get();
        var out_ = pool.Get();
        pool.Return(idle);

        pool.Dispose();
        Assert.IsTrue(idle.Disposed);
        Assert.IsFalse(out_.Disposed, "an item in use is not disposed under its user");
        pool.Return(out_);

        Assert.IsTrue(out_.Disposed);
        var late = pool.Get();
        Assert.IsFalse(late.Disposed, "work that outlives the pool's owner still gets an item");
    }

    [TestMethod]
    public void An_item_that_is_not_reusable_is_disposed_on_return()
    {
        using var pool = new DisposingObjectPool<Item>(() => new Item(), capacity: 4, reusable: i => !i.Broken);
        var item = pool.Get();
        item.Broken = true;

        pool.Return(item);

        Assert.IsTrue(item.Disposed);
        Assert.AreEqual(0, pool.Count);
    }

    private sealed class Item : IDisposable
    {
        public bool Disposed { get; private set; }

        public bool Broken { get; set; }

        public void Dispose() => Disposed = true;
    }
}
