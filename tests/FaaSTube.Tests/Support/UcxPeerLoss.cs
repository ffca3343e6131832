namespace FaaSTube.Tests.Support;

/// <summary>
/// The UCX tests in which UCX runs in the test process on the side that loses its peer (the listener in
/// process, the bindings against a peer that is killed or cut off, a client whose node goes away) run
/// only when <c>FAASTUBE_UCX_PEER_LOSS_TESTS=1</c>. UCX 1.13.1's TCP transport can take the whole test
/// process down on that path (<c>tcp_ep.c:478</c> assertion, a SIGSEGV in ucp_am_handler: docs/testing.md),
/// which is why a node runs UCX in its network gateway process; the gateway's tests keep every UCX peer
/// in a child process and always run.
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
