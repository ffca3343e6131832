using System.Text.Json;
using System.Text.Json.Serialization;

namespace FaaSTube.Topology;

/// <summary>
/// A topology as JSON, for machines the presets do not cover:
/// <code>
/// { "name": "my-box", "hostGBps": 25, "deviceMemoryGBps": 1500, "memoryGiB": 80, "linkLatencyUs": 5,
///   "pcieSwitch": [0, 0, 1, 1], "numaNode": [0, 0, 1, 1],
///   "links": [ { "from": 0, "to": 1, "kind": "NvLink", "count": 2, "GBps": 48 }, ... ] }
/// </code>
/// Links are listed once per direction (or with "symmetric": true for both). Source-generated, so it is trimming-safe.
/// </summary>
internal static class TopologyJson
{
    /// <summary>Reads a topology from JSON text.</summary>
    /// <param name="json">The text.</param>
    /// <exception cref="FormatException">Malformed or inconsistent.</exception>
    public static GpuTopology Parse(string json)
    {
        TopologyDocument doc;
        try
        {
            doc = JsonSerializer.Deserialize(json, TopologyJsonContext.Default.TopologyDocument) ?? throw new FormatException("Empty topology JSON.");
        }
        catch (JsonException e)
        {
            throw new FormatException($"The topology JSON is malformed: {e.Message}", e);
        }

        int n = doc.PcieSwitch.Length;
        if (n < 1 || doc.NumaNode is { } numa && numa.Length != n)
        {
            throw new FormatException("pcieSwitch (and numaNode, if given) need one entry per GPU.");
        }

        var peers = new PeerLink[n, n];
        foreach (var link in doc.Links)
        {
            if ((uint)link.From >= (uint)n || (uint)link.To >= (uint)n || link.From == link.To || link.GBps <= 0)
            {
                throw new FormatException($"The link {link.From} -> {link.To} names a GPU outside 0-{n - 1}, itself, or no bandwidth.");
            }

            var peer = new PeerLink(link.Kind, link.Count, link.GBps * 1e9);
            peers[link.From, link.To] = peer;
            if (link.Symmetric)
            {
                peers[link.To, link.From] = peer;
            }
        }

        try
        {
            return new GpuTopology(doc.Name, peers, doc.PcieSwitch, doc.HostGBps * 1e9, doc.DeviceMemoryGBps * 1e9,
                (long)(doc.MemoryGiB * (1L << 30)), TimeSpan.FromMicroseconds(doc.LinkLatencyUs), doc.NumaNode, doc.PcieGeneration, doc.PcieWidth);
        }
        catch (ArgumentException e)
        {
            throw new FormatException(e.Message, e);
        }
    }

    /// <summary>Reads a topology from a JSON file.</summary>
    /// <param name="path">The file.</param>
    public static GpuTopology Load(string path) => Parse(File.ReadAllText(path));

    /// <summary>Writes a topology as JSON (every direction of every link listed).</summary>
    /// <param name="topology">The topology.</param>
    public static string Write(GpuTopology topology)
    {
        ArgumentNullException.ThrowIfNull(topology);
        int n = topology.GpuCount;
        var links = new List<LinkDocument>();
        for (int a = 0; a < n; a++)
        {
            for (int b = 0; b < n; b++)
            {
                if (topology.Peer(a, b) is { Kind: not PeerLinkKind.None } p)
                {
                    links.Add(new LinkDocument { From = a, To = b, Kind = p.Kind, Count = p.LinkCount, GBps = p.BytesPerSecond / 1e9 });
                }
            }
        }

        var doc = new TopologyDocument
        {
            Name = topology.Name,
            HostGBps = topology.HostBytesPerSecond / 1e9,
            DeviceMemoryGBps = topology.DeviceMemoryBytesPerSecond / 1e9,
            MemoryGiB = topology.MemoryBytes / (double)(1L << 30),
            LinkLatencyUs = topology.LinkLatency.TotalMicroseconds,
            PcieSwitch = Enumerable.Range(0, n).Select(topology.PcieSwitch).ToArray(),
            NumaNode = Enumerable.Range(0, n).Select(topology.NumaNode).ToArray(),
            PcieGeneration = topology.PcieGeneration,
            PcieWidth = topology.PcieWidth,
            Links = links,
        };
        return JsonSerializer.Serialize(doc, TopologyJsonContext.Default.TopologyDocument);
    }
}

internal sealed class TopologyDocument
{
    public string Name { get; set; } = "custom";
    public double HostGBps { get; set; } = 25;
    public double DeviceMemoryGBps { get; set; } = 1500;
    public double MemoryGiB { get; set; } = 80;
    public double LinkLatencyUs { get; set; } = 5;
    public int[] PcieSwitch { get; set; } = [];
    public int[]? NumaNode { get; set; }
    public int PcieGeneration { get; set; }
    public int PcieWidth { get; set; }
    public List<LinkDocument> Links { get; set; } = [];
}

internal sealed class LinkDocument
{
    public int From { get; set; }
    public int To { get; set; }
    public PeerLinkKind Kind { get; set; } = PeerLinkKind.NvLink;
    public int Count { get; set; } = 1;
    [JsonPropertyName("GBps")]
    public double GBps { get; set; }
    public bool Symmetric { get; set; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true, UseStringEnumConverter = true)]
[JsonSerializable(typeof(TopologyDocument))]
internal sealed partial class TopologyJsonContext : JsonSerializerContext;
