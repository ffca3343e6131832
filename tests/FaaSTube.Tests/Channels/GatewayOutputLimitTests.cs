using System.Diagnostics;
using FaaSTube.Channels.Remote.Gateway;

namespace FaaSTube.Tests.Channels;

/// <summary>The node logs at most <see cref="GatewayOutputLimit.LinesPerSecond"/> of the gateway's lines a second and says how many it left out.</summary>
[TestClass]
public sealed class GatewayOutputLimitTests
{
    [TestMethod]
    public void Lines_over_the_limit_are_counted_and_reported_with_the_next_window()
    {
        using var limit = new GatewayOutputLimit();
        var watch = Stopwatch.StartNew();
        int taken = 0;
        long refused = 0;
        for (int i = 0; i < 3 * GatewayOutputLimit.LinesPerSecond; i++)
        {
            if (limit.Take(out long dropped))
            {
                Assert.AreEqual(0, dropped, "nothing was left out before the limit");
                taken++;
            }
            else
            {
                refused++;
            }
        }

        if (watch.Elapsed >= TimeSpan.FromSeconds(1))
        {
            Assert.Inconclusive($"the loop took {watch.ElapsedMilliseconds} ms: more than one window");
        }

        Assert.AreEqual(GatewayOutputLimit.LinesPerSecond, taken, "one window's worth is logged");
        Assert.AreEqual(2 * GatewayOutputLimit.LinesPerSecond, refused, "the rest is not");

        long reported;
        while (!limit.Take(out reported))
        {
            refused++;
            Assert.IsLessThan(TimeSpan.FromSeconds(5), watch.Elapsed, "a new window opens after a second");
        }

        Assert.AreEqual(refused, reported, "the first line of the next window reports every line left out");
        Assert.IsGreaterThanOrEqualTo(TimeSpan.FromMilliseconds(900), watch.Elapsed, "not before the window has passed");
    }
}
