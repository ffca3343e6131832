using FaaSTube.Kernels;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Kernels;

[TestClass]
public sealed class DataChecksumTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void Partial_sums_over_word_aligned_pieces_add_up_to_the_whole()
    {
        var random = Seeds.Create(TestContext);
        var data = random.Bytes(10_003);
        int cut = random.Next(1, data.Length / 8) * 8;

        ulong pieces = DataChecksum.PartialSum(data.AsSpan(0, cut), 0) + DataChecksum.PartialSum(data.AsSpan(cut), cut / 8);

        Assert.AreEqual(DataChecksum.Compute(data), DataChecksum.Finish(pieces, data.Length));
    }

    [TestMethod]
    public void Zero_buffers_of_different_lengths_differ()
    {
        Assert.AreNotEqual(DataChecksum.Compute(new byte[8]), DataChecksum.Compute(new byte[9]));
        Assert.AreNotEqual(DataChecksum.Compute([]), DataChecksum.Compute(new byte[1]));
    }

    [TestMethod]
    public void Swapping_two_words_changes_the_checksum()
    {
        var random = Seeds.Create(TestContext);
        var data = random.Bytes(64);
        var swapped = data.ToArray();
        data.AsSpan(0, 8).CopyTo(swapped.AsSpan(8));
        data.AsSpan(8, 8).CopyTo(swapped.AsSpan(0));

        Assert.AreNotEqual(DataChecksum.Compute(data), DataChecksum.Compute(swapped));
    }

    [TestMethod]
    public void The_pattern_filled_in_pieces_equals_the_pattern_filled_at_once()
    {
        var random = Seeds.Create(TestContext);
        ulong seed = (ulong)random.NextInt64();
        var whole = new byte[1001];
        DataPattern.Fill(whole, seed);
        var pieces = new byte[1001];
        DataPattern.Fill(pieces.AsSpan(0, 512), seed, 0);
        DataPattern.Fill(pieces.AsSpan(512), seed, 64);

        CollectionAssert.AreEqual(whole, pieces);
        Assert.AreNotEqual(0, whole.Count(b => b != 0));
    }
}
