using System.Text;

namespace FaaSTube.Tests.Support;

/// <summary>The remote secrets the remote, gateway and node-to-node tests give their workflows (32 bytes each).</summary>
internal static class TestSecrets
{
    /// <summary>Workflow "wf"'s.</summary>
    public static byte[] Workflow => Encoding.UTF8.GetBytes("the secret of workflow wf, 32 b!");
}
