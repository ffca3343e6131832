namespace FaaSTube.Channels.Names;

/// <summary>
/// A name in its scope. <see cref="Scope"/> is also the pool partition of the name's blocks: a
/// workflow's own scope is the workflow itself; a namespace's is <see cref="NamespacePrefix"/> and the
/// namespace, a string no workflow can be (workflow names hold no control characters,
/// src/FaaSTube/Channels/Protocol/Frames.cs), so no workflow's slabs ever hold a namespace's bytes.
/// </summary>
internal readonly record struct NameKey(string Scope, string Name)
{
    /// <summary>What a namespace's scope begins with (a control character: never part of a workflow's name).</summary>
    public const string NamespacePrefix = "\u001Fnamespace:";

    /// <summary>The longest name or namespace, in bytes (all ASCII).</summary>
    public const int MaxLength = 128;

    /// <summary>The namespace, or null for a workflow's own scope.</summary>
    public string? Namespace => Scope.StartsWith(NamespacePrefix, StringComparison.Ordinal) ? Scope[NamespacePrefix.Length..] : null;

    /// <summary>
    /// <paramref name="text"/> as a name or namespace: 1 to <see cref="MaxLength"/> characters of
    /// ASCII letters, digits and <c>. _ - / : @ + =</c>; else <see cref="TubeError.BadRequest"/> saying so.
    /// </summary>
    public static void Check(string text, string what)
    {
        if (text.Length is 0 or > MaxLength || !text.All(IsNameChar))
        {
            throw new TubeException(TubeError.BadRequest, $"A {what} is 1 to {MaxLength} characters of ASCII letters, digits and . _ - / : @ + =.");
        }
    }

    private static bool IsNameChar(char c) => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or '/' or ':' or '@' or '+' or '=';
}
