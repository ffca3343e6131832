using System.Globalization;

namespace FaaSTube.Samples.Traffic;

/// <summary>One invocation of a stage: its input's reference (a tube id, or a host region's path), the salt of its output, and how many consumers will read that output.</summary>
/// <param name="Input">The input's reference.</param>
/// <param name="Salt">Mixed into the output's seed, so that each stage (and each classifier) writes different bytes.</param>
/// <param name="Consumers">The stages that will read the output.</param>
internal sealed record StageCall(string Input, ulong Salt, int Consumers)
{
    /// <summary>The line form after the mode: "&lt;input&gt; &lt;salt&gt; &lt;consumers&gt;".</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Input} {Salt} {Consumers}");

    public static StageCall Parse(string[] parts, int at) => new(
        parts[at],
        ulong.Parse(parts[at + 1], CultureInfo.InvariantCulture),
        int.Parse(parts[at + 2], CultureInfo.InvariantCulture));
}

/// <summary>What a stage answers: its output's reference and where its time went.</summary>
/// <param name="Output">The output's reference (a tube id, or a host region's path).</param>
/// <param name="Times">Input, compute, output.</param>
internal sealed record StageReply(string Output, StageTimes Times)
{
    /// <summary>The line form: "&lt;output&gt; &lt;input ms&gt; &lt;compute ms&gt; &lt;output ms&gt;".</summary>
    public override string ToString() => $"{Output} {Times}";

    public static StageReply Parse(string line)
    {
        var parts = line.Split(' ');
        return new StageReply(parts[0], StageTimes.Parse(parts, 1));
    }
}
