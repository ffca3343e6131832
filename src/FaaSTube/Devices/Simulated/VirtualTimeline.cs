using System.Runtime.CompilerServices;

namespace FaaSTube.Devices.Simulated;

/// <summary>
/// Causal virtual time for the simulated GPU's link model. By default every copy starts no earlier
/// than the machine's clock (the latest completion seen anywhere), which serialises independent
/// flows in virtual time. A flow that <see cref="Fork"/>s gets a timeline of its own: its copies
/// start when that flow could really have issued them (after the copies it awaited), so copies on
/// different links overlap in virtual time as they would on the hardware. <see cref="Join"/> hands
/// a finished flow's time back to the flow that forked it. No effect on CUDA.
/// </summary>
internal static class VirtualTimeline
{
    private static readonly AsyncLocal<StrongBox<TimeSpan>?> Current = new();

    /// <summary>The calling flow's timeline, if it has one.</summary>
    public static StrongBox<TimeSpan>? Box => Current.Value;

    /// <summary>
    /// Gives the calling async flow (a task, an async method) its own timeline, starting at its
    /// parent's time, or at the clock of <paramref name="device"/>'s simulated machine when the parent
    /// has none; returns the parent's, to join later.
    /// </summary>
    public static StrongBox<TimeSpan>? Fork(GpuDevice? device = null)
    {
        var parent = Current.Value;
        var start = parent?.Value ?? (device as Simulated.SimulatedGpuDevice)?.Machine.Clock?.Now ?? TimeSpan.MinValue;
        Current.Value = new StrongBox<TimeSpan>(start);
        return parent;
    }

    /// <summary>Makes <paramref name="timeline"/> the calling flow's timeline (a flow that continues where another left off).</summary>
    public static void Enter(StrongBox<TimeSpan> timeline) => Current.Value = timeline;

    /// <summary>Moves <paramref name="parent"/> to at least the calling flow's time (the parent waited for this flow).</summary>
    public static void Join(StrongBox<TimeSpan>? parent)
    {
        if (parent is not null && Current.Value is { } mine)
        {
            Reach(parent, mine.Value);
        }
    }

    /// <summary>A copy of the flow ended at <paramref name="time"/>: the flow cannot go on before it.</summary>
    public static void Reach(StrongBox<TimeSpan> box, TimeSpan time)
    {
        lock (box)
        {
            if (time > box.Value)
            {
                box.Value = time;
            }
        }
    }
}
