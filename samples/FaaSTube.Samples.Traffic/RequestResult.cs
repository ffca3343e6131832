namespace FaaSTube.Samples.Traffic;

/// <summary>One request's end-to-end time and where it went along its critical path; <see cref="OtherMs"/> is the rest (invocations, scheduling).</summary>
internal sealed record RequestResult(double TotalMs, double HostToGpuMs, double GpuToGpuMs, double ComputeMs, double GpuToHostMs, ulong ResultChecksum)
{
    public double OtherMs => TotalMs - HostToGpuMs - GpuToGpuMs - ComputeMs - GpuToHostMs;
}
