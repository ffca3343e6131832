using System.IO.Compression;
using System.Xml.Linq;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Packaging;

/// <summary>
/// The packages as a user gets them (slow: each test packs in Release and builds a throwaway project,
/// a minute or two): the FaaSTube package carries the network gateway program outside lib/ and puts it
/// in a consuming application's build and publish output, where the node looks for it
/// (src/FaaSTube/Channels/Remote/Gateway/GatewaySupervisor.cs); the faastube tool package carries it
/// beside the tool. "Runs" means: the .NET host resolved every assembly its deps.json names there, and
/// the gateway, given an empty standard input, answers <c>failed No configuration line...</c> and exits 1.
/// Inconclusive where there is no .NET SDK to pack with, or no package source to restore from.
/// </summary>
[TestClass]
[TestCategory("Packaging")]
public sealed class PackageConsumerTests
{
    private static readonly string[] GatewayFiles = ["FaaSTube.Gateway.dll", "FaaSTube.Gateway.runtimeconfig.json", "FaaSTube.Gateway.deps.json"];

    [TestMethod]
    [Timeout(900_000, CooperativeCancellation = true)]
    public async Task The_FaaSTube_package_puts_a_gateway_that_runs_in_a_consumers_build_and_publish_output()
    {
        await RequireSdkAsync();
        using var work = new TempFolder();
        string feed = work.Make("feed");
        await PackAsync("src/FaaSTube", feed);

        string package = Path.Combine(feed, "FaaSTube.0.1.0.nupkg");
        Assert.IsTrue(File.Exists(package), $"no FaaSTube.0.1.0.nupkg in {feed}: {string.Join(", ", Directory.GetFiles(feed).Select(Path.GetFileName))}");
        var entries = Entries(package);
        foreach (var file in GatewayFiles)
        {
            Assert.Contains($"tools/gateway/{file}", entries, $"the package lacks tools/gateway/{file}: {string.Join(", ", entries)}");
        }

        Assert.Contains("buildTransitive/FaaSTube.targets", entries);
        Assert.Contains("build/FaaSTube.targets", entries);
        Assert.IsFalse(entries.Any(e => e.StartsWith("lib/", StringComparison.Ordinal) && e.Contains("Gateway", StringComparison.Ordinal)), $"the gateway must not be a compile reference (lib/): {string.Join(", ", entries)}");

        // A console project of a user's: references the package from the feed (and the repository's
        // package sources for FaaSTube's dependencies), with a packages folder of its own, so a FaaSTube
        // 0.1.0 cached by an earlier run is not the one it gets.
        string consumer = work.Make("consumer");
        WriteNugetConfig(consumer, feed, work.Make("packages"));
        string framework = $"net{Environment.Version.Major}.0";
        await File.WriteAllTextAsync(Path.Combine(consumer, "Consumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>{framework}</TargetFramework>
                <Nullable>enable</Nullable>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="FaaSTube" Version="0.1.0" />
              </ItemGroup>
            </Project>
            """);
        await File.WriteAllTextAsync(Path.Combine(consumer, "Program.cs"), "System.Console.WriteLine(typeof(FaaSTube.Channels.TubeNodeOptions).Assembly.GetName().Name);\n");

        var build = await DotnetCli.RunAsync(consumer, ["build", "-c", "Debug", "--disable-build-servers"]);
        RequireRestored(build);
        Assert.AreEqual(0, build.Code, $"the consumer did not build:\n{DotnetCli.Tail(build.Output)}\n{DotnetCli.Tail(build.Error)}");
        await AssertGatewayRunsAsync(Path.Combine(consumer, "bin", "Debug", framework), "the consumer's build output");

        string published = Path.Combine(work.Path, "published");
        var publish = await DotnetCli.RunAsync(consumer, ["publish", "-c", "Release", "-o", published, "--disable-build-servers"]);
        Assert.AreEqual(0, publish.Code, $"the consumer did not publish:\n{DotnetCli.Tail(publish.Output)}\n{DotnetCli.Tail(publish.Error)}");
        await AssertGatewayRunsAsync(published, "the consumer's publish output");
    }

    [TestMethod]
    [Timeout(900_000, CooperativeCancellation = true)]
    public async Task The_faastube_tool_package_carries_a_gateway_that_runs_beside_the_tool()
    {
        await RequireSdkAsync();
        using var work = new TempFolder();
        string feed = work.Make("feed");
        await PackAsync("src/FaaSTube.Cli", feed);

        string package = Path.Combine(feed, "FaaSTube.Cli.0.1.0.nupkg");
        Assert.IsTrue(File.Exists(package), $"no FaaSTube.Cli.0.1.0.nupkg in {feed}: {string.Join(", ", Directory.GetFiles(feed).Select(Path.GetFileName))}");
        string tool = work.Make("tool");
        ZipFile.ExtractToDirectory(package, tool);
        string toolFolder = Directory.GetFiles(tool, "FaaSTube.Cli.dll", SearchOption.AllDirectories).Select(Path.GetDirectoryName).Single()!;
        StringAssert.StartsWith(Path.GetRelativePath(tool, toolFolder).Replace('\\', '/'), "tools/");
        await AssertGatewayRunsAsync(toolFolder, "the faastube tool package's tools folder");
    }

    /// <summary>The gateway's three files are in <paramref name="folder"/>, and run from there: the host finds what its deps.json names, and the program answers.</summary>
    private static async Task AssertGatewayRunsAsync(string folder, string what)
    {
        foreach (var file in GatewayFiles)
        {
            Assert.IsTrue(File.Exists(Path.Combine(folder, file)), $"{file} is not in {what} ({folder}): {string.Join(", ", Directory.GetFiles(folder).Select(Path.GetFileName))}");
        }

        var (code, output, error) = await DotnetCli.RunAsync(folder, [Path.Combine(folder, "FaaSTube.Gateway.dll")], TimeSpan.FromMinutes(1));
        Assert.AreEqual(1, code, $"the gateway in {what} exited {code}; stdout: {output}; stderr: {DotnetCli.Tail(error)}");
        string firstLine = output.Split('\n')[0];
        StringAssert.StartsWith(firstLine, "failed ", $"the gateway in {what} did not answer; stderr: {DotnetCli.Tail(error)}");
        StringAssert.Contains(firstLine, "No configuration line");

        if (!FaaSTube.Native.UcxLibrary.TryLoad(out _))
        {
            return; // no UCX here: the native half cannot be reached (the tests that need UCX say so)
        }

        // With a configuration it loads FaaSTube.Native and UCX, listens, and stops when its input ends.
        var config = GatewayConfigs.Alone(memoryLimit: 512L << 20);
        (code, output, error) = await DotnetCli.RunAsync(folder, [Path.Combine(folder, "FaaSTube.Gateway.dll")], TimeSpan.FromMinutes(1), config.ToJson() + "\n");
        Assert.AreEqual(0, code, $"the gateway in {what}, configured, exited {code}; stdout: {output}; stderr: {DotnetCli.Tail(error)}");
        StringAssert.StartsWith(output.Split('\n')[0], "listening 127.0.0.1:", $"the gateway in {what} listens over UCX; stderr: {DotnetCli.Tail(error)}");
    }

    private static async Task PackAsync(string project, string feed)
    {
        var pack = await DotnetCli.RunAsync(Repository.Root, ["pack", project, "-c", "Release", "-o", feed, "--disable-build-servers"]);
        RequireRestored(pack);
        Assert.AreEqual(0, pack.Code, $"dotnet pack {project} failed:\n{DotnetCli.Tail(pack.Output)}\n{DotnetCli.Tail(pack.Error)}");
    }

    private static async Task RequireSdkAsync()
    {
        if (await DotnetCli.SdksAsync() is null)
        {
            Assert.Inconclusive("no .NET SDK here (dotnet --list-sdks lists none), so the packages cannot be packed and consumed.");
        }
    }

    /// <summary>Inconclusive when a package source could not be reached (NU1301): that is the machine's network, not the package.</summary>
    private static void RequireRestored((int Code, string Output, string Error) run)
    {
        if (run.Code != 0 && (run.Output + run.Error).Contains("NU1301", StringComparison.Ordinal))
        {
            Assert.Inconclusive($"a package source could not be reached (NU1301), so nothing could be restored: {DotnetCli.Tail(run.Output, 5)}");
        }
    }

    /// <summary>nuget.config for the consumer: the feed under test first, then the repository's own sources (nuget.config at its root), and a packages folder of its own.</summary>
    private static void WriteNugetConfig(string directory, string feed, string packages)
    {
        var repository = XDocument.Load(Path.Combine(Repository.Root, "nuget.config"));
        var sources = repository.Root!.Element("packageSources")?.Elements("add").ToList() ?? [];
        var config = new XDocument(new XElement("configuration",
            new XElement("config", new XElement("add", new XAttribute("key", "globalPackagesFolder"), new XAttribute("value", packages))),
            new XElement("packageSources",
                new XElement("clear"),
                new XElement("add", new XAttribute("key", "faastube-under-test"), new XAttribute("value", feed)),
                sources.Select(s => new XElement(s)))));
        config.Save(Path.Combine(directory, "nuget.config"));
    }

    private static List<string> Entries(string package)
    {
        using var zip = ZipFile.OpenRead(package);
        return [.. zip.Entries.Select(e => e.FullName)];
    }

    /// <summary>A temporary folder, removed with what is in it.</summary>
    private sealed class TempFolder : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("faastube-pack-").FullName;

        public string Make(string name) => Directory.CreateDirectory(System.IO.Path.Combine(Path, name)).FullName;

        public void Dispose()
        {
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (IOException)
            {
                // A file still held open (a process killed by a timeout): the system's temporary folder cleanup takes it.
            }
        }
    }
}
