using System.Globalization;
using FaaSTube.Hosting;
using FaaSTube.Samples.FunctionHost.Hosting;

namespace FaaSTube.Samples.FunctionHost.Gateway;

/// <summary>
/// The gateway's host (<c>--gateway</c>): <c>POST /traffic</c> runs the workflow for the frames in
/// the body (<see cref="TrafficGateway"/>). The functions' URLs come from <c>Gateway</c>
/// (<see cref="GatewayOptions"/>, validated at start); its FaaSTube client from <c>AddFaaSTubeClient</c>
/// (function <c>gateway</c>, a 32 MiB window unless configured otherwise).
/// </summary>
internal static class GatewayApp
{
    public static WebApplication Create(string[] args)
    {
        var builder = HostSetup.CreateBuilder(args, new Dictionary<string, string?>
        {
            [$"{FaaSTubeServiceCollectionExtensions.ClientSection}:Workflow"] = "traffic",
            [$"{FaaSTubeServiceCollectionExtensions.ClientSection}:Function"] = "gateway",
            [$"{FaaSTubeServiceCollectionExtensions.ClientSection}:WindowBytes"] = (32 << 20).ToString(CultureInfo.InvariantCulture),
        }, maxBodyBytes: 0);
        var gateway = builder.Configuration.GetSection(GatewayOptions.Section).Get<GatewayOptions>() ?? new GatewayOptions();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Limits.MaxRequestBodySize = gateway.MaxFrameBytes);
        builder.Services.AddOptions<GatewayOptions>().BindConfiguration(GatewayOptions.Section)
            .ValidateOnStart();
        builder.Services.AddSingleton<Microsoft.Extensions.Options.IValidateOptions<GatewayOptions>, GatewayOptionsValidator>();
        builder.Services.AddHttpClient(FunctionInvoker.ClientName, (sp, http) => http.Timeout = gateway.FunctionTimeout);
        builder.Services.AddFaaSTubeClient();
        builder.Services.AddSingleton<FunctionInvoker>();
        builder.Services.AddSingleton<TrafficGateway>();

        var app = builder.Build();
        HostSetup.UseDefaults(app);
        app.MapPost("/traffic", (HttpRequest request, TrafficGateway traffic, CancellationToken cancellationToken) => traffic.RunAsync(request, cancellationToken));
        return app;
    }
}
