namespace FaaSTube.Samples.FunctionHost.Functions;

/// <summary>A stage function's request: ids, never tensors. <c>{"input":"&lt;32 hex digits&gt;","salt":1,"consumers":1}</c>.</summary>
/// <param name="Input">The input's tube id (the data stays on the GPU, in the node's pool).</param>
/// <param name="Salt">Mixed into the output's seed (see <c>Stage.ComputeAsync</c> in samples/FaaSTube.Samples.Traffic/Stage.cs).</param>
/// <param name="Consumers">How many functions will read the output (1 to <see cref="MaxConsumers"/>).</param>
internal sealed record FunctionRequest(string? Input, ulong Salt, int Consumers)
{
    /// <summary>The most consumers a request may announce.</summary>
    public const int MaxConsumers = 64;
}

/// <summary>A stage function's answer: the output's tube id and where the time went.</summary>
internal sealed record FunctionResponse(string Output, double InputMs, double ComputeMs, double OutputMs);

/// <summary>The part of an RFC 9457 problem answer the gateway reads back from a function.</summary>
internal sealed record FunctionProblem(string? Code, string? Title, string? Detail);
