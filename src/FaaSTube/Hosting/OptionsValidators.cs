using FaaSTube.Channels;
using Microsoft.Extensions.Options;

namespace FaaSTube.Hosting;

/// <summary>Checks <see cref="TubeNodeOptions"/> as the node does at start, naming a bad option by its configuration path (<c>FaaSTube:Node:Pool:SlabBytes</c>).</summary>
internal sealed class TubeNodeOptionsValidator : IValidateOptions<TubeNodeOptions>
{
    public ValidateOptionsResult Validate(string? name, TubeNodeOptions options) =>
        OptionsCheck.Run(FaaSTubeServiceCollectionExtensions.NodeSection, options.ValidateAll);
}

/// <summary>Checks <see cref="TubeClientOptions"/> as a connect does, naming a bad option by its configuration path (<c>FaaSTube:Client:WindowBytes</c>).</summary>
internal sealed class TubeClientOptionsValidator : IValidateOptions<TubeClientOptions>
{
    public ValidateOptionsResult Validate(string? name, TubeClientOptions options) =>
        OptionsCheck.Run(FaaSTubeServiceCollectionExtensions.ClientSection, options.Validate);
}

/// <summary>The options' own validation (what non-DI callers get as <see cref="ArgumentException"/>), as an options validation result.</summary>
internal static class OptionsCheck
{
    public static ValidateOptionsResult Run(string section, Action validate)
    {
        try
        {
            validate();
            return ValidateOptionsResult.Success;
        }
        catch (ArgumentException e)
        {
            return ValidateOptionsResult.Fail($"{section}:{e.ParamName ?? "?"}: {e.Message}");
        }
    }
}
