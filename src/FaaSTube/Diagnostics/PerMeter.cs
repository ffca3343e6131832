using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace FaaSTube.Diagnostics;

/// <summary>
/// One set of instruments per meter, created exactly once. <see cref="ConditionalWeakTable{TKey, TValue}.GetValue"/>
/// may run its factory on several racing threads and keep one result; a discarded set would still have
/// published its instruments on the meter (an exporter would see each twice). Here the table keeps an
/// empty slot, and the instruments are created under the kept slot's lock, by the first caller only.
/// </summary>
/// <typeparam name="T">The component's instruments (<c>PoolMetrics</c>, <c>TransferMetrics</c>, <c>ChannelMetrics</c>).</typeparam>
internal sealed class PerMeter<T>(Func<Meter, T> create)
    where T : class
{
    private readonly ConditionalWeakTable<Meter, Slot> _byMeter = [];

    /// <summary>The instruments on <paramref name="meter"/>, created by the first caller (components call this when built, never on a hot path).</summary>
    public T Of(Meter meter)
    {
        var slot = _byMeter.GetValue(meter, static _ => new Slot());
        lock (slot)
        {
            return slot.Value ??= create(meter);
        }
    }

    private sealed class Slot
    {
        public T? Value;
    }
}
