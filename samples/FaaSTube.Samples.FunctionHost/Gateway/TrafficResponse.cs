namespace FaaSTube.Samples.FunctionHost.Gateway;

/// <summary>
/// The gateway's answer for one request: the result's checksum (16 hex digits: the classifiers'
/// outputs folded as <c>TrafficFlow.CollectAsync</c> does) and where the time went along the critical path.
/// </summary>
internal sealed record TrafficResponse(string Checksum, double TotalMs, double HostToGpuMs, double GpuToGpuMs, double ComputeMs, double GpuToHostMs, double OtherMs);
