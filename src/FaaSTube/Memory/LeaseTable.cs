namespace FaaSTube.Memory;

/// <summary>
/// The leases on one block, counted per holder. A block starts with one holder (whoever allocated
/// it), and a pool used on its own often ends with that one, so that holder is kept inline and a
/// dictionary is made only when a second holder comes while the first still holds (in the node:
/// the directory, then each consumer): an allocation does not pay for a table it may not use.
/// Not thread-safe: the block's lock guards it.
/// </summary>
internal struct LeaseTable
{
    private LeaseHolder _holder;
    private int _count; // leases of _holder; 0: the inline slot is empty
    private Dictionary<LeaseHolder, int>? _more;

    /// <summary>How many holders hold at least one lease.</summary>
    public readonly int Holders => (_count > 0 ? 1 : 0) + (_more?.Count ?? 0);

    /// <summary>All leases, over all holders.</summary>
    public readonly int Total
    {
        get
        {
            int total = _count;
            if (_more is not null)
            {
                foreach (int count in _more.Values)
                {
                    total += count;
                }
            }

            return total;
        }
    }

    /// <summary>One more lease for <paramref name="holder"/>.</summary>
    public void Add(LeaseHolder holder)
    {
        if (_count > 0 && _holder == holder)
        {
            _count++;
        }
        else if (_more is not null && _more.TryGetValue(holder, out int count))
        {
            _more[holder] = count + 1;
        }
        else if (_count == 0)
        {
            (_holder, _count) = (holder, 1);
        }
        else
        {
            _more ??= [];
            _more[holder] = 1;
        }
    }

    /// <summary>Takes one lease of <paramref name="holder"/>: false when it holds none; <paramref name="last"/> when that was its last.</summary>
    public bool TryRemoveOne(LeaseHolder holder, out bool last)
    {
        if (_count > 0 && _holder == holder)
        {
            last = --_count == 0;
            return true;
        }

        if (_more is not null && _more.TryGetValue(holder, out int count))
        {
            last = count == 1;
            if (last)
            {
                _more.Remove(holder);
            }
            else
            {
                _more[holder] = count - 1;
            }

            return true;
        }

        last = false;
        return false;
    }

    /// <summary>Takes every lease of <paramref name="holder"/>; how many there were.</summary>
    public int RemoveAll(LeaseHolder holder)
    {
        if (_count > 0 && _holder == holder)
        {
            int inline = _count;
            _count = 0;
            return inline;
        }

        return _more is not null && _more.Remove(holder, out int count) ? count : 0;
    }
}
