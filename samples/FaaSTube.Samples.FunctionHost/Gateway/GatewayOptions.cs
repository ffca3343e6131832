namespace FaaSTube.Samples.FunctionHost.Gateway;

/// <summary>Where the gateway finds the functions (configuration section <c>Gateway</c>): one URL each, one per classifier replica.</summary>
internal sealed class GatewayOptions
{
    /// <summary>The configuration section.</summary>
    public const string Section = "Gateway";

    /// <summary>The preprocess function's URL (<c>Gateway:Preprocess</c>).</summary>
    public string Preprocess { get; set; } = "";

    /// <summary>The detect function's URL.</summary>
    public string Detect { get; set; } = "";

    /// <summary>The classify functions' URLs (<c>Gateway:Classify:0</c>, <c>:1</c>, ...): the fan-out, 1 to 8.</summary>
    public List<string> Classify { get; set; } = [];

    /// <summary>How long one function call may take before the gateway gives up on it.</summary>
    public TimeSpan FunctionTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>The largest frames the gateway takes (its request body).</summary>
    public long MaxFrameBytes { get; set; } = 64L << 20;

    /// <summary>The first thing wrong with these options, or null.</summary>
    public string? Problem()
    {
        foreach (var (name, url) in Classify.Select((u, i) => ($"Classify:{i}", u)).Prepend(("Detect", Detect)).Prepend(("Preprocess", Preprocess)))
        {
            if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            {
                return $"{Section}:{name}: '{url}' is not an http URL.";
            }
        }

        return Classify.Count is < 1 or > 8 ? $"{Section}:Classify: {Classify.Count} classifiers; 1 to 8 are served."
            : FunctionTimeout <= TimeSpan.Zero ? $"{Section}:FunctionTimeout must be positive."
            : MaxFrameBytes is < 1 or > 1L << 30 ? $"{Section}:MaxFrameBytes must be from 1 byte to 1 GiB."
            : null;
    }
}

/// <summary>Runs <see cref="GatewayOptions.Problem"/> when the host starts: invalid options fail the start, naming the option.</summary>
internal sealed class GatewayOptionsValidator : Microsoft.Extensions.Options.IValidateOptions<GatewayOptions>
{
    public Microsoft.Extensions.Options.ValidateOptionsResult Validate(string? name, GatewayOptions options) =>
        options.Problem() is { } problem
            ? Microsoft.Extensions.Options.ValidateOptionsResult.Fail(problem)
            : Microsoft.Extensions.Options.ValidateOptionsResult.Success;
}
