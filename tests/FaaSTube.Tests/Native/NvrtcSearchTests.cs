using FaaSTube.Native;

namespace FaaSTube.Tests.Native;

/// <summary>Where NVRTC is looked for, and what topology reads of the PCIe link (no CUDA needed).</summary>
[TestClass]
public sealed class NvrtcSearchTests
{
    [TestMethod]
    public void The_override_then_cuda_path_then_cuda_home_then_usr_local_then_the_loader_are_tried_in_order()
    {
        var environment = new Dictionary<string, string>
        {
            ["FAASTUBE_NVRTC"] = "/opt/nvrtc/libnvrtc.so.13.0.48",
            ["CUDA_PATH"] = "/opt/cuda-a",
            ["CUDA_HOME"] = "/opt/cuda-b",
        };

        var candidates = NvrtcSearch.Candidates(v => environment.GetValueOrDefault(v), windows: false);

        Assert.AreEqual("/opt/nvrtc/libnvrtc.so.13.0.48", candidates[0]);
        int cudaPath = IndexOf(candidates, "/opt/cuda-a/lib64/libnvrtc.so.13");
        int cudaPathTargets = IndexOf(candidates, "/opt/cuda-a/targets/x86_64-linux/lib/libnvrtc.so.13");
        int cudaHome = IndexOf(candidates, "/opt/cuda-b/lib64/libnvrtc.so.13");
        int usrLocal = IndexOf(candidates, "/usr/local/cuda/lib64/libnvrtc.so.13");
        int usrLocalTargets = IndexOf(candidates, "/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.13");
        int loader = IndexOf(candidates, "libnvrtc.so.13");
        Assert.IsTrue(0 < cudaPath && cudaPath < cudaPathTargets && cudaPathTargets < cudaHome && cudaHome < usrLocal
            && usrLocal < usrLocalTargets && usrLocalTargets < loader, string.Join("\n", candidates));
        Assert.AreEqual("libnvrtc.so", candidates[^1]);
        Assert.AreEqual(candidates.Count, candidates.Distinct().Count(), "a path is tried twice");
    }

    [TestMethod]
    public void An_override_naming_a_folder_is_searched_for_every_file_name_and_unset_variables_add_nothing()
    {
        var candidates = NvrtcSearch.Candidates(v => v == "FAASTUBE_NVRTC" ? "/srv/cuda/lib" : null, windows: false);

        CollectionAssert.AreEqual(
            new[] { "/srv/cuda/lib/libnvrtc.so.13", "/srv/cuda/lib/libnvrtc.so.12", "/srv/cuda/lib/libnvrtc.so" },
            candidates.Take(3).ToArray());
        Assert.IsFalse(candidates.Any(c => c.Contains("/opt/", StringComparison.Ordinal)));
        Assert.AreEqual("/usr/local/cuda/lib64/libnvrtc.so.13", candidates[3]);
    }

    [TestMethod]
    public void When_nvrtc_is_missing_the_error_lists_every_path_tried()
    {
        if (CudaLibrary.IsNvrtcAvailable)
        {
            Assert.Inconclusive("NVRTC is installed here; the error cannot be seen.");
        }

        foreach (var path in NvrtcSearch.Candidates(Environment.GetEnvironmentVariable, OperatingSystem.IsWindows()))
        {
            StringAssert.Contains(CudaLibrary.NvrtcUnavailableReason, path);
        }

        StringAssert.Contains(CudaLibrary.NvrtcUnavailableReason, NvrtcSearch.OverrideVariable);
    }

    [TestMethod]
    [DataRow(5, 16, 1, 16, 5, 16)] // an idle H100: trained down to Gen1, max Gen5
    [DataRow(4, 8, 4, 16, 4, 8)]   // a x16 card in a x8 slot: the max width the system allows
    [DataRow(0, 0, 3, 16, 3, 16)]  // NVML cannot tell the max: the current values stand in
    public void Topology_reads_the_max_pcie_link_not_the_current_one(int maxGen, int maxWidth, int curGen, int curWidth, int gen, int width)
    {
        var link = NvLinkDiscovery.ChooseLink(maxGen == 0 ? null : maxGen, maxWidth == 0 ? null : maxWidth, curGen, curWidth);

        Assert.AreEqual((gen, width), link);
    }

    private static int IndexOf(IReadOnlyList<string> list, string item)
    {
        int at = list.ToList().IndexOf(item);
        Assert.IsTrue(at >= 0, $"{item} is not tried:\n{string.Join("\n", list)}");
        return at;
    }
}
