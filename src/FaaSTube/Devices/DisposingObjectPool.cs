namespace FaaSTube.Devices;

/// <summary>
/// A bounded pool of disposable objects that disposes what it does not keep: a return beyond
/// <see cref="Capacity"/>, a return after <see cref="Dispose"/>, and everything it holds when disposed.
/// (Microsoft.Extensions.ObjectPool's DefaultObjectPool drops such objects without disposing them,
/// which left pinned memory and CUDA events to finalizers.) Thread-safe.
/// </summary>
internal sealed class DisposingObjectPool<T> : IDisposable
    where T : class, IDisposable
{
    private readonly Func<T> _create;
    private readonly Func<T, bool> _reusable;
    private readonly Stack<T> _kept;
    private readonly Lock _lock = new();
    private bool _disposed;

    /// <param name="create">Makes a new object when the pool is empty.</param>
    /// <param name="capacity">How many idle objects are kept.</param>
    /// <param name="reusable">False for an object that must not be handed out again (it is disposed).</param>
    public DisposingObjectPool(Func<T> create, int capacity, Func<T, bool>? reusable = null)
    {
        ArgumentNullException.ThrowIfNull(create);
        ArgumentOutOfRangeException.ThrowIfNegative(capacity);
        _create = create;
        _reusable = reusable ?? (_ => true);
        Capacity = capacity;
        _kept = new Stack<T>(Math.Min(capacity, 64));
    }

    /// <summary>How many idle objects the pool keeps at most.</summary>
    public int Capacity { get; }

    /// <summary>Idle objects held now.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _kept.Count;
            }
        }
    }

    /// <summary>An idle object, or a new one (always a new one once disposed: work that outlives the pool's owner still runs).</summary>
    public T Get()
    {
        lock (_lock)
        {
            if (_kept.TryPop(out var item))
            {
                return item;
            }
        }

        return _create();
    }

    /// <summary>Keeps <paramref name="item"/> for reuse, or disposes it (pool full or disposed, or not reusable).</summary>
    public void Return(T item)
    {
        ArgumentNullException.ThrowIfNull(item);
        if (_reusable(item))
        {
            lock (_lock)
            {
                if (!_disposed && _kept.Count < Capacity)
                {
                    _kept.Push(item);
                    return;
                }
            }
        }

        item.Dispose();
    }

    /// <summary>Disposes every idle object; objects returned later are disposed on return.</summary>
    public void Dispose()
    {
        T[] idle;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            idle = [.. _kept];
            _kept.Clear();
        }

        foreach (var item in idle)
        {
            item.Dispose();
        }
    }
}
