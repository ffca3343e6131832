using System.Text.Json;
using System.Text.Json.Serialization;
using FaaSTube.Channels.Peers;

namespace FaaSTube.Channels.Remote.Gateway;

/// <summary>
/// A node's fetch from a peer as it crosses the pipes between the node and its network gateway: the
/// node writes <c>fetch {json}</c> on the gateway's input, the gateway answers <c>fetched {json}</c>
/// on its output (the lines are the node's and the gateway's alone: nobody else holds the pipes). The
/// node reads the answer as it reads anything from the process that runs UCX: parsed strictly, its
/// request number must be one it asked, its id one of the asked workflow (<see cref="PeerFetcher"/> checks).
/// </summary>
internal static class GatewayFetchLines
{
    public const string Fetch = "fetch ";
    public const string Fetched = "fetched ";

    /// <summary>The longest answer line the node takes (a refusal's message included).</summary>
    public const int MaxLine = 4096;

    public static string Ask(PeerFetch fetch) => Fetch + JsonSerializer.Serialize(
        new FetchLine(fetch.Request, fetch.Address, fetch.Workflow, fetch.Id?.ToString(), fetch.Namespace, fetch.Name, fetch.WaitMilliseconds),
        GatewayFetchJson.Default.FetchLine);

    public static PeerFetch ReadAsk(string line)
    {
        var ask = JsonSerializer.Deserialize(line.AsSpan(Fetch.Length), GatewayFetchJson.Default.FetchLine) ?? throw new InvalidDataException("An empty fetch line.");
        if (ask.Address is null || ask.Workflow is null || (ask.Id is null) == (ask.Name is null) || ask.WaitMilliseconds < 0)
        {
            throw new InvalidDataException("A fetch names an address, a workflow, and an id or a name.");
        }

        return new PeerFetch(ask.Request, ask.Address, ask.Workflow, ask.Id is { } id ? TubeId.Parse(id) : null, ask.Namespace, ask.Name, ask.WaitMilliseconds);
    }

    public static string Answer(PeerFetched fetched) => Fetched + JsonSerializer.Serialize(
        new FetchedLine(fetched.Request, fetched.Local.ToString(), fetched.Length, fetched.Version, null, null),
        GatewayFetchJson.Default.FetchedLine);

    public static string Refusal(long request, TubeError error, string message) => Refused(request, (ushort)error, message);

    /// <summary>The peer could not be reached (the node reads it as a <see cref="TubeNodeUnavailableException"/> of the peer's, as in its own process).</summary>
    public static string Unreachable(long request, string message) => Refused(request, (ushort)FaaSTubeErrorCode.NodeUnavailable, message);

    private static string Refused(long request, ushort code, string message) => Fetched + JsonSerializer.Serialize(
        new FetchedLine(request, null, 0, 0, code, message.Length > 1024 ? message[..1024] : message),
        GatewayFetchJson.Default.FetchedLine);

    /// <summary>The request number and the outcome: what was fetched, or the refusal (an error the node knows, else Internal).</summary>
    public static (long Request, PeerFetched? Fetched, FaaSTubeException? Refused) ReadAnswer(string line)
    {
        if (line.Length > MaxLine)
        {
            throw new InvalidDataException($"A fetched line of {line.Length} characters (at most {MaxLine}).");
        }

        var answer = JsonSerializer.Deserialize(line.AsSpan(Fetched.Length), GatewayFetchJson.Default.FetchedLine) ?? throw new InvalidDataException("An empty fetched line.");
        if (answer.Error == (ushort)FaaSTubeErrorCode.NodeUnavailable)
        {
            return (answer.Request, null, new TubeNodeUnavailableException(answer.Message ?? "The peer could not be reached."));
        }

        if (answer.Error is { } code)
        {
            var error = Enum.IsDefined((TubeError)code) ? (TubeError)code : TubeError.Internal;
            return (answer.Request, null, new TubeException(error, answer.Message ?? "The network gateway refused the fetch."));
        }

        if (answer.Local is null || answer.Length <= 0 || answer.Version < 0)
        {
            throw new InvalidDataException("A fetched line without its id and length.");
        }

        return (answer.Request, new PeerFetched(answer.Request, TubeId.Parse(answer.Local), answer.Length, answer.Version), null);
    }

    internal sealed record FetchLine(long Request, string? Address, string? Workflow, string? Id, string? Namespace, string? Name, int WaitMilliseconds);

    internal sealed record FetchedLine(long Request, string? Local, long Length, long Version, ushort? Error, string? Message);
}

[JsonSerializable(typeof(GatewayFetchLines.FetchLine))]
[JsonSerializable(typeof(GatewayFetchLines.FetchedLine))]
internal sealed partial class GatewayFetchJson : JsonSerializerContext;
