using System.Collections.Concurrent;
using System.Diagnostics;
using FaaSTube.Channels;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Diagnostics;

/// <summary>Connecting is a client call like the others: a span of kind client, failed when no node answers.</summary>
[TestClass]
public sealed class ConnectSpanTests
{
    [TestMethod]
    public async Task Connecting_is_a_client_span_and_a_refused_connect_is_an_error_span()
    {
        string workflow = $"connect-{Guid.NewGuid():N}"; // this test's spans only
        var spans = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == Telemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a =>
            {
                if (a.OperationName == "faastube.connect" && Equals(a.GetTagItem("faastube.workflow"), workflow))
                {
                    spans.Enqueue(a);
                }
            },
        };
        ActivitySource.AddActivityListener(listener);

        await using (var h = await NodeHarness.StartAsync())
        {
            await using var client = await h.ConnectAsync(inProcess: false, workflow: workflow);
        }

        var options = new TubeClientOptions { Workflow = workflow, SocketPath = Path.Combine(Path.GetTempPath(), $"ft-none-{Guid.NewGuid():N}.sock") };
        await Assert.ThrowsAsync<TubeNodeUnavailableException>(() => TubeClient.ConnectAsync(options));

        var stopped = spans.ToArray();
        Assert.HasCount(2, stopped, "one span per connect");
        Assert.IsTrue(stopped.All(s => s.Kind == ActivityKind.Client));
        Assert.AreEqual(ActivityStatusCode.Unset, stopped[0].Status, "the connect that reached a node");
        Assert.AreEqual(ActivityStatusCode.Error, stopped[1].Status, "the connect that found none");
        Assert.AreEqual("NodeUnavailable", stopped[1].GetTagItem("error.type"));
    }
}
