using System.Net.Http.Json;
using FaaSTube.Samples.FunctionHost.Functions;
using FaaSTube.Samples.FunctionHost.Hosting;
using FaaSTube.Samples.Traffic;
using Microsoft.Extensions.Options;

namespace FaaSTube.Samples.FunctionHost.Gateway;

/// <summary>Calls a stage function over HTTP (a client from <see cref="IHttpClientFactory"/>): ids in, ids out.</summary>
internal sealed class FunctionInvoker(IHttpClientFactory clients, IOptions<GatewayOptions> options)
{
    /// <summary>The named client's name.</summary>
    public const string ClientName = "functions";

    /// <summary>How many classifiers there are.</summary>
    public int FanOut => options.Value.Classify.Count;

    public async Task<StageReply> InvokeAsync(Stage stage, int replica, StageCall call, CancellationToken cancellationToken)
    {
        var o = options.Value;
        string url = stage == Stage.Preprocess ? o.Preprocess : stage == Stage.Detect ? o.Detect : o.Classify[replica];
        string name = stage == Stage.Classify ? $"classify[{replica}]" : stage.Name;
        var client = clients.CreateClient(ClientName);
        HttpResponseMessage response;
        try
        {
            response = await client.PostAsJsonAsync(url, new FunctionRequest(call.Input, call.Salt, call.Consumers), HostJson.Default.FunctionRequest, cancellationToken);
        }
        catch (Exception e) when (e is HttpRequestException || (e is TaskCanceledException && !cancellationToken.IsCancellationRequested))
        {
            throw new FunctionFailedException(name, StatusCodes.Status502BadGateway, ErrorCodes.FunctionFailed, "the function is not reachable (the gateway's log has where it was called)", e);
        }

        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                var problem = await ReadAsync(response, HostJson.Default.FunctionProblem, cancellationToken);
                int status = response.StatusCode == System.Net.HttpStatusCode.ServiceUnavailable ? StatusCodes.Status503ServiceUnavailable : StatusCodes.Status502BadGateway;
                throw new FunctionFailedException(name, status, problem?.Code ?? ErrorCodes.FunctionFailed,
                    $"answered {(int)response.StatusCode} {problem?.Code}: {problem?.Detail ?? problem?.Title ?? "(no problem details)"}");
            }

            var answer = await ReadAsync(response, HostJson.Default.FunctionResponse, cancellationToken);
            return answer is not null && TubeIds.IsValid(answer.Output)
                ? new StageReply(answer.Output, new StageTimes(answer.InputMs, answer.ComputeMs, answer.OutputMs))
                : throw new FunctionFailedException(name, StatusCodes.Status502BadGateway, ErrorCodes.FunctionFailed, "answered no tube id");
        }
    }

    private static async Task<T?> ReadAsync<T>(HttpResponseMessage response, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, CancellationToken cancellationToken)
    {
        try
        {
            return await response.Content.ReadFromJsonAsync(type, cancellationToken);
        }
        catch (System.Text.Json.JsonException)
        {
            return default;
        }
    }
}
