using System.Globalization;
using FaaSTube.Hosting;
using FaaSTube.Samples.FunctionHost.Hosting;
using FaaSTube.Samples.Traffic;

namespace FaaSTube.Samples.FunctionHost.Functions;

/// <summary>
/// A host of one function (<c>--function preprocess|detect|classify</c>): <c>POST /</c> invokes it
/// with a <see cref="FunctionRequest"/> and answers a <see cref="FunctionResponse"/>. Its FaaSTube
/// client comes from <c>AddFaaSTubeClient</c>, options from <c>FaaSTube:Client</c> (workflow
/// <c>traffic</c>, the function's name, an 8 MiB window unless configured otherwise).
/// </summary>
internal static class FunctionApp
{
    /// <summary>Requests carry ids, never tensors: a body larger than this is refused (413).</summary>
    public const long MaxBodyBytes = 16 << 10;

    public static WebApplication Create(string[] args, Stage stage)
    {
        var builder = HostSetup.CreateBuilder(args, new Dictionary<string, string?>
        {
            [$"{FaaSTubeServiceCollectionExtensions.ClientSection}:Workflow"] = "traffic",
            [$"{FaaSTubeServiceCollectionExtensions.ClientSection}:Function"] = stage.Name,
            [$"{FaaSTubeServiceCollectionExtensions.ClientSection}:WindowBytes"] = (8 << 20).ToString(CultureInfo.InvariantCulture),
        }, MaxBodyBytes);
        builder.Services.AddFaaSTubeClient();
        builder.Services.AddSingleton(sp => new StageFunction(stage, sp.GetRequiredService<ITubeClientProvider>()));

        var app = builder.Build();
        HostSetup.UseDefaults(app);
        app.MapPost("/", (FunctionRequest request, StageFunction function, CancellationToken cancellationToken) => function.InvokeAsync(request, cancellationToken));
        return app;
    }
}
