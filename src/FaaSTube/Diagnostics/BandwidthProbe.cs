using System.Diagnostics;
using FaaSTube.Devices;
using FaaSTube.Devices.Simulated;
using FaaSTube.Kernels;

namespace FaaSTube.Diagnostics;

/// <summary>
/// Measures copy bandwidth like NVIDIA's nvbandwidth: host to GPU and back (pinned and pageable),
/// GPU to GPU on one device and between every pair; each figure the median of several runs, each
/// synchronised, in GB/s (10^9 bytes per second). What <c>faastube probe</c> and the probe sample
/// (samples/FaaSTube.Probe) print.
/// </summary>
/// <param name="iterations">Runs per figure (after one warm-up run).</param>
/// <param name="clock">The simulated GPU's virtual clock, to report its link model instead of this machine's memcpy speed; null: wall time.</param>
public sealed class BandwidthProbe(int iterations, VirtualClock? clock = null)
{
    /// <summary>The median bandwidth of <paramref name="copy"/>, which moves <paramref name="bytes"/>, in GB/s.</summary>
    /// <param name="bytes">Bytes one copy moves.</param>
    /// <param name="copy">One synchronised copy.</param>
    public async Task<double> MeasureAsync(long bytes, Func<ValueTask> copy)
    {
        ArgumentNullException.ThrowIfNull(copy);
        await copy().ConfigureAwait(false); // warm-up: first-touch of pages, lazy kernel compile
        var seconds = new double[iterations];
        for (int i = 0; i < iterations; i++)
        {
            var start = clock?.Now ?? TimeSpan.Zero;
            long ticks = Stopwatch.GetTimestamp();
            await copy().ConfigureAwait(false);
            seconds[i] = clock is null
                ? Stopwatch.GetElapsedTime(ticks).TotalSeconds
                : (clock.Now - start).TotalSeconds;
        }

        Array.Sort(seconds);
        return bytes / seconds[iterations / 2] / 1e9;
    }

    /// <summary>
    /// Every figure for GPU 0 at each size, the data checked on the GPU against the host's checksum,
    /// and the GPU to GPU matrix at the largest size when there is more than one GPU.
    /// </summary>
    /// <param name="gpus">The GPUs.</param>
    /// <param name="sizes">Copy sizes in bytes (each at most <see cref="int.MaxValue"/>).</param>
    /// <param name="progress">Told before each measurement: steps done, steps in all, and what runs.</param>
    /// <param name="cancellationToken">Stops between measurements.</param>
    public async Task<CopyBandwidthReport> MeasureAsync(GpuSystem gpus, IReadOnlyList<long> sizes, IProgress<ProbeStep>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(gpus);
        ArgumentNullException.ThrowIfNull(sizes);
        if (sizes.Count == 0 || sizes.Any(s => s <= 0 || s > int.MaxValue))
        {
            throw new ArgumentOutOfRangeException(nameof(sizes), "Sizes must be between 1 byte and 2 GiB, and at least one.");
        }

        int n = gpus.Devices.Count;
        int total = sizes.Count * 5 + (n > 1 ? n * (n - 1) : 0);
        int done = 0;
        void Step(string what)
        {
            cancellationToken.ThrowIfCancellationRequested();
            progress?.Report(new ProbeStep(done++, total, what));
        }

        var device = gpus.Devices[0];
        using var stream = device.CreateStream();
        long largest = sizes.Max();
        using var deviceA = device.Allocate(largest);
        using var deviceB = device.Allocate(largest);
        using var pinned = device.AllocatePinned(largest);
        var pageable = new byte[largest];
        Random.Shared.NextBytes(pageable);
        pageable.CopyTo(pinned.GetSpan());

        var rows = new List<CopyBandwidthRow>();
        foreach (long size in sizes)
        {
            string mib = $"{size / (double)(1 << 20):0.##} MiB";
            Step($"host to GPU, pinned, {mib}");
            var h2dPinned = await MeasureAsync(size, () => stream.CopyAsync(pinned.Memory[..(int)size], deviceA.Slice(0, size))).ConfigureAwait(false);
            Step($"host to GPU, pageable, {mib}");
            var h2dPageable = await MeasureAsync(size, () => stream.CopyAsync(pageable.AsMemory(0, (int)size), deviceA.Slice(0, size))).ConfigureAwait(false);
            Step($"GPU to host, pinned, {mib}");
            var d2hPinned = await MeasureAsync(size, () => stream.CopyAsync(deviceA.Slice(0, size), pinned.Memory[..(int)size])).ConfigureAwait(false);
            Step($"GPU to host, pageable, {mib}");
            var d2hPageable = await MeasureAsync(size, () => stream.CopyAsync(deviceA.Slice(0, size), pageable.AsMemory(0, (int)size))).ConfigureAwait(false);
            Step($"GPU to GPU (same device), {mib}");
            var d2d = await MeasureAsync(size, () => stream.CopyAsync(deviceA.Slice(0, size), deviceB.Slice(0, size))).ConfigureAwait(false);
            rows.Add(new CopyBandwidthRow(size, h2dPinned, h2dPageable, d2hPinned, d2hPageable, d2d));
        }

        // The last host to GPU copy was the pageable one of the last size: deviceA holds pageable's first bytes.
        long smallest = sizes.Min();
        await stream.CopyAsync(pageable.AsMemory(0, (int)smallest), deviceA.Slice(0, smallest)).ConfigureAwait(false);
        ulong expected = DataChecksum.Compute(pageable.AsSpan(0, (int)smallest));
        ulong onGpu = await stream.ChecksumAsync(deviceA.Slice(0, smallest)).ConfigureAwait(false);

        double[][] peers = [];
        if (n > 1)
        {
            peers = await PeerMatrixAsync(gpus, largest, Step).ConfigureAwait(false);
        }

        progress?.Report(new ProbeStep(total, total, "done"));
        return new CopyBandwidthReport(iterations, clock is not null, rows, onGpu == expected, onGpu, largest, peers);
    }

    private async Task<double[][]> PeerMatrixAsync(GpuSystem gpus, long size, Action<string> step)
    {
        int n = gpus.Devices.Count;
        var buffers = gpus.Devices.Select(d => d.Allocate(size)).ToArray();
        try
        {
            var matrix = new double[n][];
            for (int a = 0; a < n; a++)
            {
                matrix[a] = new double[n];
                using var stream = gpus.Devices[a].CreateStream();
                for (int b = 0; b < n; b++)
                {
                    if (a == b)
                    {
                        matrix[a][b] = double.NaN;
                        continue;
                    }

                    step($"GPU {a} to GPU {b}");
                    var (from, to) = (buffers[a], buffers[b]);
                    matrix[a][b] = await MeasureAsync(size, () => stream.CopyAsync(from, to)).ConfigureAwait(false);
                }
            }

            return matrix;
        }
        finally
        {
            foreach (var b in buffers)
            {
                b.Dispose();
            }
        }
    }
}

/// <summary>One measurement of <see cref="BandwidthProbe.MeasureAsync(GpuSystem, IReadOnlyList{long}, IProgress{ProbeStep}?, CancellationToken)"/> about to run.</summary>
/// <param name="Done">Measurements done.</param>
/// <param name="Total">Measurements in all.</param>
/// <param name="Description">What runs now.</param>
public readonly record struct ProbeStep(int Done, int Total, string Description);

/// <summary>Copy bandwidth of one size on GPU 0, in GB/s.</summary>
/// <param name="Bytes">Bytes per copy.</param>
/// <param name="HostToDevicePinned">Host (page-locked) to GPU.</param>
/// <param name="HostToDevicePageable">Host (ordinary memory) to GPU.</param>
/// <param name="DeviceToHostPinned">GPU to host (page-locked).</param>
/// <param name="DeviceToHostPageable">GPU to host (ordinary memory).</param>
/// <param name="DeviceToDevice">Within the GPU.</param>
public readonly record struct CopyBandwidthRow(long Bytes, double HostToDevicePinned, double HostToDevicePageable, double DeviceToHostPinned, double DeviceToHostPageable, double DeviceToDevice);

/// <summary>What the probe measured.</summary>
/// <param name="Iterations">Runs per figure (the median is reported).</param>
/// <param name="Modelled">True when the figures are the simulated GPU's link model (virtual clock), not this machine's speed.</param>
/// <param name="Rows">One row per size, on GPU 0.</param>
/// <param name="ChecksumMatches">Whether the GPU's checksum of copied data matched the host's.</param>
/// <param name="GpuChecksum">The GPU's checksum.</param>
/// <param name="PeerBytes">Bytes per copy in the GPU to GPU matrix.</param>
/// <param name="PeerGigabytesPerSecond">GPU to GPU bandwidth, row the source, column the destination (NaN on the diagonal); empty with one GPU.</param>
public sealed record CopyBandwidthReport(int Iterations, bool Modelled, IReadOnlyList<CopyBandwidthRow> Rows, bool ChecksumMatches, ulong GpuChecksum, long PeerBytes, IReadOnlyList<IReadOnlyList<double>> PeerGigabytesPerSecond);
