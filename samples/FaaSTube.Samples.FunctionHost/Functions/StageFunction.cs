using FaaSTube.Channels;
using FaaSTube.Hosting;
using FaaSTube.Samples.FunctionHost.Hosting;
using FaaSTube.Samples.Traffic;

namespace FaaSTube.Samples.FunctionHost.Functions;

/// <summary>
/// One stage of the traffic workflow as a function: its input arrives as a tube id, its GPU work
/// runs on the producer's pool memory mapped here (zero copy, <see cref="StageWorker"/>), and its
/// output leaves as a tube id. One invocation at a time per process (a platform's concurrency of 1:
/// Knative's <c>containerConcurrency: 1</c>, the watchdog's <c>max_inflight=1</c>); more load means
/// more processes. The client comes from dependency injection and is replaced, with the worker,
/// when the node came back after going away.
/// </summary>
internal sealed class StageFunction(Stage stage, ITubeClientProvider tubes) : IDisposable
{
    private readonly SemaphoreSlim _one = new(1, 1);
    private TubeClient? _client;
    private StageWorker? _worker;

    /// <summary>The stage this process serves.</summary>
    public Stage Stage => stage;

    /// <summary>Validates the request (400 with a code for a malformed id or field), then runs the stage.</summary>
    public async Task<IResult> InvokeAsync(FunctionRequest request, CancellationToken cancellationToken)
    {
        if (Validate(request) is { } problem)
        {
            return problem;
        }

        await _one.WaitAsync(cancellationToken);
        try
        {
            var client = await tubes.GetClientAsync(cancellationToken); // TubeNodeUnavailableException: 503 NodeUnavailable (ProblemExceptionHandler)
            var reply = await WorkerFor(client).RunAsync(Mode.Tube, new StageCall(request.Input!, request.Salt, request.Consumers));
            return Results.Ok(new FunctionResponse(reply.Output, reply.Times.InputMs, reply.Times.ComputeMs, reply.Times.OutputMs));
        }
        finally
        {
            _one.Release();
        }
    }

    private static IResult? Validate(FunctionRequest request)
    {
        if (request.Input is null || !TubeIds.IsValid(request.Input))
        {
            return ErrorCodes.Problem(StatusCodes.Status400BadRequest, ErrorCodes.BadRequest,
                $"input: {(request.Input is null ? "missing" : $"'{Shorten(request.Input)}' is not a tube id")} (32 hex digits).");
        }

        return request.Consumers is < 1 or > FunctionRequest.MaxConsumers
            ? ErrorCodes.Problem(StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, $"consumers: {request.Consumers} is not from 1 to {FunctionRequest.MaxConsumers}.")
            : null;
    }

    private static string Shorten(string text) => text.Length <= 40 ? text : text[..40] + "...";

    private StageWorker WorkerFor(TubeClient client)
    {
        if (!ReferenceEquals(client, _client))
        {
            _worker?.Dispose();
            _worker = new StageWorker(client, stage); // the worker's stream is on the client's GPUs
            _client = client;
        }

        return _worker!;
    }

    public void Dispose()
    {
        _worker?.Dispose();
        _one.Dispose();
    }
}
