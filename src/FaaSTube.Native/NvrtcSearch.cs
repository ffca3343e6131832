namespace FaaSTube.Native;

/// <summary>
/// Where NVRTC is looked for, in order: the file or folder named by <see cref="OverrideVariable"/>;
/// <c>$CUDA_PATH</c> and <c>$CUDA_HOME</c> (their <c>lib64</c>, <c>lib</c> and
/// <c>targets/x86_64-linux/lib</c>; <c>bin</c> on Windows); <c>/usr/local/cuda/lib64</c>;
/// <c>/usr/local/cuda/targets/x86_64-linux/lib</c>; then the default loader search by file name.
/// Toolkit installs (pip wheels, containers without <c>ldconfig</c> entries) often leave NVRTC off
/// the loader's path, hence the folders. Pure: the environment is passed in, so tests run without CUDA.
/// </summary>
internal static class NvrtcSearch
{
    /// <summary>A path tried first: the library itself when its file name contains <c>nvrtc</c>, else a folder holding it.</summary>
    public const string OverrideVariable = "FAASTUBE_NVRTC";

    /// <summary>The library's file names, newest first.</summary>
    public static IReadOnlyList<string> FileNames(bool windows) => windows
        ? ["nvrtc64_130_0.dll", "nvrtc64_120_0.dll"]
        : ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"];

    /// <summary>Every candidate, in the order tried (duplicates removed); bare file names go to the default loader.</summary>
    /// <param name="environment">Reads an environment variable (null when unset).</param>
    /// <param name="windows">Windows naming and folders.</param>
    public static IReadOnlyList<string> Candidates(Func<string, string?> environment, bool windows)
    {
        ArgumentNullException.ThrowIfNull(environment);
        var names = FileNames(windows);
        var result = new List<string>();
        void AddFolder(string folder)
        {
            foreach (var name in names)
            {
                result.Add(Path.Combine(folder, name));
            }
        }

        if (environment(OverrideVariable) is { Length: > 0 } explicitPath)
        {
            if (Path.GetFileName(explicitPath.TrimEnd('/', '\\')).Contains("nvrtc", StringComparison.OrdinalIgnoreCase))
            {
                result.Add(explicitPath);
            }
            else
            {
                AddFolder(explicitPath);
            }
        }

        foreach (var variable in new[] { "CUDA_PATH", "CUDA_HOME" })
        {
            if (environment(variable) is { Length: > 0 } root)
            {
                if (windows)
                {
                    AddFolder(Path.Combine(root, "bin"));
                }
                else
                {
                    AddFolder(Path.Combine(root, "lib64"));
                    AddFolder(Path.Combine(root, "lib"));
                    AddFolder(Path.Combine(root, "targets", "x86_64-linux", "lib"));
                }
            }
        }

        if (!windows)
        {
            AddFolder("/usr/local/cuda/lib64");
            AddFolder("/usr/local/cuda/targets/x86_64-linux/lib");
        }

        result.AddRange(names);
        return result.Distinct(StringComparer.Ordinal).ToArray();
    }
}
