using System.Diagnostics;

namespace FaaSTube.Tests.Support;

/// <summary>Waiting for a state the code under test shows only as a counter or a count (a session count, bytes in use): polled every 20 ms, bounded.</summary>
internal static class Polling
{
    /// <summary>Returns once <paramref name="condition"/> holds; fails with <paramref name="what"/> once <paramref name="bound"/> has passed.</summary>
    public static async Task UntilAsync(Func<bool> condition, TimeSpan bound, string what)
    {
        var watch = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.IsLessThan(bound, watch.Elapsed, what);
            await Task.Delay(20); // polled: nothing signals these states
        }
    }
}
