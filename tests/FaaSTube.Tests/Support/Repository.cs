namespace FaaSTube.Tests.Support;

/// <summary>The repository the tests run from (the folder with FaaSTube.sln above the test binaries), for tests that check docs against code.</summary>
internal static class Repository
{
    private static readonly Lazy<string> Found = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "FaaSTube.sln")))
            {
                return dir.FullName;
            }
        }

        throw new AssertFailedException($"No FaaSTube.sln above {AppContext.BaseDirectory}.");
    });

    public static string Root => Found.Value;
}
