using FaaSTube.Channels;

namespace FaaSTube.Samples.FunctionHost.Functions;

/// <summary>Checks a tube id's text form before it reaches the client (<see cref="TubeId.Parse"/> throws on a malformed one).</summary>
internal static class TubeIds
{
    public static bool IsValid(string text) =>
        text.Length == 2 * TubeId.Size && text.All(char.IsAsciiHexDigit);
}
