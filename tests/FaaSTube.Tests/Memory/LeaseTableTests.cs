using FaaSTube.Memory;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Memory;

[TestClass]
public sealed class LeaseTableTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public void Random_adds_and_removes_match_a_plain_count_per_holder()
    {
        var random = Seeds.Create(TestContext);
        var table = default(LeaseTable);
        var model = new Dictionary<LeaseHolder, int>();
        for (int step = 0; step < 20_000; step++)
        {
            var holder = new LeaseHolder(random.Next(4)); // few holders: the inline slot is taken, freed and retaken
            switch (random.Next(5))
            {
                case 0 or 1:
                    table.Add(holder);
                    model[holder] = model.GetValueOrDefault(holder) + 1;
                    break;
                case 2 or 3:
                    bool held = model.TryGetValue(holder, out int count);
                    Assert.AreEqual(held, table.TryRemoveOne(holder, out bool last), $"step {step}: holder {holder}");
                    Assert.AreEqual(held && count == 1, last, $"step {step}: last lease of {holder}");
                    if (held && count == 1)
                    {
                        model.Remove(holder);
                    }
                    else if (held)
                    {
                        model[holder] = count - 1;
                    }

                    break;
                default:
                    Assert.AreEqual(model.GetValueOrDefault(holder), table.RemoveAll(holder), $"step {step}: all of {holder}");
                    model.Remove(holder);
                    break;
            }

            Assert.AreEqual(model.Count, table.Holders, $"step {step}: holders");
            Assert.AreEqual(model.Values.Sum(), table.Total, $"step {step}: leases");
        }
    }
}
