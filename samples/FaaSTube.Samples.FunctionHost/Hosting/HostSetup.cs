using System.Globalization;
using Microsoft.Extensions.Configuration.Memory;

namespace FaaSTube.Samples.FunctionHost.Hosting;

/// <summary>
/// What every host here shares, in the shape FaaS platforms give a function's container: it listens
/// on the port in <c>PORT</c> (Knative's contract; 0: any free port), says so with a ready line,
/// answers <c>GET /_/health</c> (OpenFaaS's watchdog path), answers failures as problems with a
/// code (<see cref="ProblemExceptionHandler"/>), and stops on SIGTERM (or, when its launcher asks,
/// when its standard input closes).
/// </summary>
internal static class HostSetup
{
    /// <summary>The health endpoint: 200 once the host serves.</summary>
    public const string HealthPath = "/_/health";

    /// <summary>The line a host writes on standard output once it listens, followed by its address.</summary>
    public const string ReadyLine = "ready ";

    /// <summary>The switch that makes a host stop when its standard input closes (its launcher went away or is done).</summary>
    public const string StopWithStdin = "--stop-with-stdin";

    /// <summary>A builder with <paramref name="defaults"/> under every other source (files, environment, command line win).</summary>
    /// <param name="args">The command line (configuration keys: <c>--FaaSTube:Client:SocketPath=...</c>).</param>
    /// <param name="defaults">The role's defaults.</param>
    /// <param name="maxBodyBytes">The largest request body the host takes.</param>
    public static WebApplicationBuilder CreateBuilder(string[] args, IDictionary<string, string?> defaults, long maxBodyBytes)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args = args.Where(a => a != StopWithStdin).ToArray(),
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Configuration.Sources.Insert(0, new MemoryConfigurationSource { InitialData = defaults });
        if (builder.Configuration["PORT"] is { } port)
        {
            int number = int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out int p) && p <= ushort.MaxValue
                ? p
                : throw new InvalidOperationException($"PORT: '{port}' is not a port number.");
            builder.WebHost.UseUrls(string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{number}")); // loopback: the sample's platform is this machine
        }

        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Limits.MaxRequestBodySize = maxBodyBytes);
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.Services.AddProblemDetails();
        builder.Services.AddExceptionHandler<ProblemExceptionHandler>();
        builder.Services.AddHealthChecks();
        builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, HostJson.Default));
        return builder;
    }

    /// <summary>The middleware every host has: problems for failures, the health endpoint.</summary>
    public static void UseDefaults(WebApplication app)
    {
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.MapHealthChecks(HealthPath);
    }

    /// <summary>Starts <paramref name="app"/>, writes the ready line with its address, and runs until it is stopped.</summary>
    public static async Task<int> RunAsync(WebApplication app, string[] args)
    {
        await app.StartAsync();
        Console.WriteLine(ReadyLine + app.Urls.First());
        if (args.Contains(StopWithStdin))
        {
            _ = Task.Run(async () =>
            {
                while (await Console.In.ReadLineAsync() is not null)
                {
                }

                app.Lifetime.StopApplication();
            });
        }

        await app.WaitForShutdownAsync();
        await app.DisposeAsync();
        return 0;
    }

    /// <summary>Polls a host's health endpoint every 20 ms until it answers 200; <paramref name="cancellationToken"/> is the deadline.</summary>
    public static async Task WaitHealthyAsync(HttpClient http, Uri host, CancellationToken cancellationToken)
    {
        using var ticks = new PeriodicTimer(TimeSpan.FromMilliseconds(20));
        do
        {
            try
            {
                using var response = await http.GetAsync(new Uri(host, HealthPath), cancellationToken);
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // not listening yet: poll again
            }
        }
        while (await ticks.WaitForNextTickAsync(cancellationToken));
    }
}
