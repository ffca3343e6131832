namespace FaaSTube.Tests.Support;

/// <summary>
/// The UCX integration tests whose peers die, are cut off or are never there (remote clients and
/// nodes, the namespace test bed) run only when <c>FAASTUBE_UCX_PEER_LOSS_TESTS=1</c>. UCX 1.13.1's
/// TCP transport can take the whole test process down on its refused-connection path: one fresh-clone
/// CI run aborted on its assertion <c>tcp_ep.c:478 !(ep->flags &amp; UCT_TCP_EP_FLAG_CTX_TYPE_TX)</c>
/// in <c>ucp_worker_progress</c> right after "connect ... failed: Connection refused", another died
/// with SIGSEGV after the same message (docs/testing.md). Until that is worked around, a CI run would
/// fail at random; run them by hand with the variable set (they pass when run by class).
/// </summary>
internal static class UcxPeerLoss
{
    public const string Variable = "FAASTUBE_UCX_PEER_LOSS_TESTS";

    /// <summary>Skips the calling test (Inconclusive, with the reason) unless <see cref="Variable"/> is 1.</summary>
    public static void RequireOptIn()
    {
        if (Environment.GetEnvironmentVariable(Variable) != "1")
        {
            Assert.Inconclusive($"UCX peer-loss tests run only with {Variable}=1: UCX 1.13.1's TCP transport can abort the test process on a refused connection (tcp_ep.c:478 assertion), see docs/testing.md.");
        }
    }
}
