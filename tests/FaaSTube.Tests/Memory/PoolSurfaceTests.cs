using System.Reflection;
using FaaSTube.Channels;
using FaaSTube.Memory;

namespace FaaSTube.Tests.Memory;

/// <summary>What the pool shows its users: the node's own calls are not part of it, holders are typed, and "pinned" means page-locked memory only.</summary>
[TestClass]
public sealed class PoolSurfaceTests
{
    [TestMethod]
    [DataRow("Release")]
    [DataRow("ReleaseHolder")]
    [DataRow("OpenSlab")]
    [DataRow("CloseSlab")]
    [DataRow("ImporterGone")]
    [DataRow("Resolve")]
    public void A_node_only_method_is_internal(string name)
    {
        var methods = typeof(GpuMemoryPool).GetMethods(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic).Where(m => m.Name == name).ToList();
        Assert.IsNotEmpty(methods, $"GpuMemoryPool.{name} exists");
        Assert.IsTrue(methods.All(m => m.IsAssembly), $"GpuMemoryPool.{name} is internal");
    }

    [TestMethod]
    public void Lease_holders_are_typed_and_no_public_member_says_pinned_for_data_that_never_expires()
    {
        Assert.AreEqual(typeof(LeaseHolder), typeof(BlockOptions).GetProperty(nameof(BlockOptions.Holder))!.PropertyType);
        Assert.AreEqual(typeof(LeaseHolder), typeof(PoolBlock).GetMethod(nameof(PoolBlock.AddLease))!.GetParameters().Single().ParameterType);
        Assert.AreEqual("holder 7", new LeaseHolder(7).ToString());
        foreach (var type in new[] { typeof(PutOptions), typeof(BlockOptions), typeof(PoolBlock), typeof(GpuMemoryPool), typeof(GpuPoolOptions) })
        {
            var pinned = type.GetMembers(BindingFlags.Instance | BindingFlags.Static | BindingFlags.Public).Where(m => m.Name.Contains("Pin", StringComparison.Ordinal)).Select(m => m.Name);
            var allowed = type == typeof(GpuPoolOptions) ? new[] { nameof(GpuPoolOptions.PinnedSpill), "get_PinnedSpill", "set_PinnedSpill" } : []; // page-locked spill memory
            CollectionAssert.IsSubsetOf(pinned.ToArray(), allowed, $"{type.Name}: {string.Join(", ", pinned)}");
        }
    }
}
