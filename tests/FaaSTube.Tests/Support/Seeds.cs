using System.Globalization;

namespace FaaSTube.Tests.Support;

/// <summary>Random inputs with a logged seed: set FAASTUBE_TEST_SEED to replay a run.</summary>
internal static class Seeds
{
    public static Random Create(TestContext context)
    {
        var fixedSeed = Environment.GetEnvironmentVariable("FAASTUBE_TEST_SEED");
        int seed = fixedSeed is null ? Random.Shared.Next() : int.Parse(fixedSeed, CultureInfo.InvariantCulture);
        context.WriteLine($"seed {seed} (replay with FAASTUBE_TEST_SEED={seed})");
        return new Random(seed);
    }

    public static byte[] Bytes(this Random random, long length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }
}
