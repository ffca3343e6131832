namespace FaaSTube.Transfers;

/// <summary>Who a transfer is for and how urgent it is.</summary>
public sealed record TransferRequest
{
    /// <summary>The tenant (function): bandwidth without deadlines is shared fairly between tenants, not transfers.</summary>
    public string Tenant { get; init; } = "default";

    /// <summary>
    /// The service-level objective, counted from submission: the transfer plus <see cref="ComputeTime"/>
    /// must fit in it. Its least rate is size / (SLO - compute). Null: no deadline (fair share).
    /// </summary>
    public TimeSpan? Slo { get; init; }

    /// <summary>The compute the function still does after the transfer, within the SLO.</summary>
    public TimeSpan ComputeTime { get; init; }

    /// <summary>When the link is oversubscribed, higher priorities keep their least rate first (default 0).</summary>
    public int Priority { get; init; }

    /// <summary>Bytes done so far, reported as chunks complete.</summary>
    public IProgress<long>? Progress { get; init; }

    internal void Validate()
    {
        ArgumentException.ThrowIfNullOrEmpty(Tenant, nameof(Tenant));
        ArgumentOutOfRangeException.ThrowIfLessThan(ComputeTime, TimeSpan.Zero, nameof(ComputeTime));
        if (Slo is { } slo && slo <= ComputeTime)
        {
            throw new ArgumentOutOfRangeException(nameof(Slo), slo, $"The SLO must leave time for the transfer: it is not longer than the compute time {ComputeTime}.");
        }
    }
}

/// <summary>How a transfer went.</summary>
/// <param name="Bytes">Bytes moved.</param>
/// <param name="Elapsed">From submission to completion.</param>
/// <param name="DeadlineMet">Whether it finished within SLO - compute time; null without an SLO.</param>
/// <param name="Degraded">True when the link was oversubscribed and this transfer got less than its least rate for a while.</param>
/// <param name="Staged">True when the bytes went through pinned staging slots (false: the host memory was already pinned).</param>
public readonly record struct TransferResult(long Bytes, TimeSpan Elapsed, bool? DeadlineMet, bool Degraded, bool Staged);
