using System.Diagnostics;
using System.Globalization;
using FaaSTube.Channels;
using FaaSTube.Hosting;
using FaaSTube.Samples.FunctionHost.Hosting;
using FaaSTube.Samples.Traffic;
using Microsoft.Extensions.Options;

namespace FaaSTube.Samples.FunctionHost.Gateway;

/// <summary>
/// The workflow's front door, <c>POST /traffic</c> with the frames as the body: the body is written
/// straight into the client's window and put on the GPU (<see cref="TubePutWriter"/>), the stage
/// functions are called over HTTP with ids (<see cref="TrafficFlow.RunStagesAsync"/>), and the
/// classifiers' outputs come back to the host for the result's checksum.
/// </summary>
internal sealed class TrafficGateway(ITubeClientProvider tubes, FunctionInvoker functions, IOptions<GatewayOptions> options)
{
    public async Task<IResult> RunAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        long max = options.Value.MaxFrameBytes;
        if (request.ContentLength is not long length || length < 1 || length > max)
        {
            return ErrorCodes.Problem(
                request.ContentLength > max ? StatusCodes.Status413PayloadTooLarge : StatusCodes.Status411LengthRequired,
                ErrorCodes.BadLength,
                string.Create(CultureInfo.InvariantCulture, $"The frames need a Content-Length from 1 to {max} bytes (got {request.ContentLength?.ToString(CultureInfo.InvariantCulture) ?? "none"})."));
        }

        long start = Stopwatch.GetTimestamp();
        var client = await tubes.GetClientAsync(cancellationToken);
        var frames = await PutAsync(client, request.Body, length, cancellationToken);
        double arrivalMs = StageTimes.Ms(start);

        var flow = await TrafficFlow.RunStagesAsync(frames.ToString(), functions.FanOut, (stage, replica, call) => functions.InvokeAsync(stage, replica, call, cancellationToken));
        var (checksum, collectMs) = await TrafficFlow.CollectAsync(flow.Classifiers, async output =>
        {
            var bytes = new byte[Stage.Classify.OutputBytes];
            await client.GetAsync(TubeId.Parse(output), bytes, cancellationToken);
            return bytes;
        });
        var r = flow.Result(StageTimes.Ms(start), arrivalMs, collectMs, checksum);
        return Results.Ok(new TrafficResponse(checksum.ToString("x16", CultureInfo.InvariantCulture), r.TotalMs, r.HostToGpuMs, r.GpuToGpuMs, r.ComputeMs, r.GpuToHostMs, r.OtherMs));
    }

    /// <summary>The body, read into the window slot by slot while the node DMAs the slot before: no copy of the frames in managed memory.</summary>
    private static async Task<TubeId> PutAsync(TubeClient client, Stream body, long length, CancellationToken cancellationToken)
    {
        await using var writer = await client.CreatePutWriterAsync(length, cancellationToken: cancellationToken);
        while (writer.Written < writer.Length)
        {
            await writer.FlushAsync(cancellationToken);
            int read = await body.ReadAsync(writer.GetMemory(), cancellationToken);
            if (read == 0)
            {
                throw new BadHttpRequestException("The body ended before its Content-Length.");
            }

            writer.Advance(read);
        }

        return await writer.CompleteAsync(cancellationToken);
    }
}
