namespace FaaSTube.Channels;

/// <summary>Where a named object lives and how it is kept (<see cref="TubeClient.PutNamedAsync"/>, <see cref="TubeClient.GetNamedAsync(string, NamedOptions?, CancellationToken)"/>, <see cref="TubeClient.GetOrLoadAsync"/>).</summary>
public sealed record NamedOptions
{
    /// <summary>
    /// The namespace, shared by the workflows the node's policy grants it
    /// (<see cref="TubeNodeOptions.AuthorizeNamespace"/>); null (the default): the workflow's own scope.
    /// Names and namespaces are 1 to 128 characters of ASCII letters, digits and <c>. _ - / : @ + =</c>.
    /// </summary>
    public string? Namespace { get; init; }

    /// <summary>The GPU: where a Put places the object, and where a Get wants it (a replica is made there once if the object is on another GPU). Default 0.</summary>
    public int Device { get; init; }

    /// <summary>
    /// True (the default): the object is a cache entry: under memory pressure the pool may move it to
    /// host memory, and it is restored on the next Get. False: it stays on the GPU until it is replaced or deleted.
    /// </summary>
    public bool Cacheable { get; init; } = true;
}
