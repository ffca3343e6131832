using System.Globalization;

namespace FaaSTube.Cli.Views;

/// <summary>Bytes and rates as people read them (binary units: KiB, MiB, GiB, TiB), invariant culture.</summary>
internal static class Sizes
{
    private static readonly string[] Units = ["B", "KiB", "MiB", "GiB", "TiB"];

    /// <summary><paramref name="bytes"/> in the largest unit that keeps the figure at 1 or more: <c>1.5 MiB</c>, <c>512 B</c>.</summary>
    public static string Bytes(double bytes)
    {
        int unit = 0;
        double value = bytes;
        while (Math.Abs(value) >= 1024 && unit < Units.Length - 1)
        {
            value /= 1024;
            unit++;
        }

        return unit == 0 ? $"{value.ToString("0", CultureInfo.InvariantCulture)} B" : $"{value.ToString("0.0", CultureInfo.InvariantCulture)} {Units[unit]}";
    }

    /// <summary>A rate: <c>1.5 GiB/s</c>.</summary>
    public static string Rate(double bytesPerSecond) => Bytes(bytesPerSecond) + "/s";

    /// <summary>Seconds as <c>12s</c>, <c>3m04s</c> or <c>2h05m</c>.</summary>
    public static string Age(double seconds) =>
        seconds < 60 ? $"{seconds.ToString("0", CultureInfo.InvariantCulture)}s"
        : seconds < 3600 ? string.Create(CultureInfo.InvariantCulture, $"{(int)(seconds / 60)}m{(int)(seconds % 60):00}s")
        : string.Create(CultureInfo.InvariantCulture, $"{(int)(seconds / 3600)}h{(int)(seconds % 3600 / 60):00}m");
}
