using FaaSTube.Channels;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Diagnostics;

/// <summary>
/// What a client is told when the node fails unexpectedly: a code and a message with a reference to
/// the node's log, never the exception's message, type or stack trace, whatever carries the request;
/// the details are in the node's log under that reference.
/// </summary>
[TestClass]
public sealed class ErrorMessageTests
{
    private const string Secret = "secret-detail-7f3a";

    [TestMethod]
    [DataRow("socket")]
    [DataRow("ring")]
    [DataRow("in-process")]
    public async Task An_unexpected_failure_reaches_the_client_as_a_generic_message_with_a_code_and_is_logged_on_the_node(string transport)
    {
        var log = new CollectingLoggerFactory();
        await using var h = await NodeHarness.StartAsync(loggerFactory: log);
        var client = await h.ConnectAsync(inProcess: transport == "in-process", controlRingBytes: transport == "ring" ? 64 << 10 : 0);
        Assert.AreEqual(transport == "ring", client.UsesControlRing, "the transport under test");
        h.Node.RequestStarted += _ => throw new InvalidOperationException($"{Secret}: the node's internals at FaaSTube.Secret.Method() in /src/Secret.cs:line 42");

        var failed = await Assert.ThrowsAsync<TubeException>(async () => await client.WhereAsync(TubeId.NewId()));

        Assert.AreEqual(TubeError.Internal, failed.Error);
        Assert.IsFalse(string.IsNullOrWhiteSpace(failed.Reason), "a message");
        StringAssert.Contains(failed.Reason, "reference");
        foreach (var leak in new[] { Secret, "InvalidOperationException", "Secret.cs", "   at ", "FaaSTube.Channels." })
        {
            Assert.DoesNotContain(leak, failed.Message, $"'{leak}' is the node's to know");
        }

        string reference = failed.Reason.Split("reference ")[1][..12];
        var entry = log.Entries.SingleOrDefault(e => e.Contains(reference, StringComparison.Ordinal));
        Assert.IsNotNull(entry, "the node logged the failure under the reference it gave");
        StringAssert.Contains(entry, Secret, "with the exception");
    }

    [TestMethod]
    public async Task A_refusal_carries_its_own_message_and_code_and_no_stack_trace()
    {
        await using var h = await NodeHarness.StartAsync();
        var client = await h.ConnectAsync(inProcess: false);
        var refused = await Assert.ThrowsAsync<TubeException>(async () => await client.GetAsync(TubeId.NewId(), new byte[16]));
        Assert.AreEqual(TubeError.NotFound, refused.Error);
        Assert.IsFalse(string.IsNullOrWhiteSpace(refused.Reason));
        Assert.DoesNotContain("   at ", refused.Reason);
        Assert.IsNull(refused.InnerException, "nothing of the node's exceptions travels");
    }
}
