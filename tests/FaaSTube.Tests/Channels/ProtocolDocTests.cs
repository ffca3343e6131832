using System.Reflection;
using FaaSTube.Channels;
using System.Text.RegularExpressions;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// docs/protocol.md against the message records of src/FaaSTube/Channels/Protocol/Messages: every
/// request's row of the request/answer table (and the Hello, GatewayHello, Ok, Error, CloseSlab, mapping and trace context lines)
/// lists the record's fields in order, as the convention of src/FaaSTube/Channels/Protocol/Payload.cs
/// names them. A doc field is <c>type name</c>, or a bare type whose name is the type (<c>id</c>,
/// <c>mapping</c>); parentheses are comments; <c>-</c> is no field.
/// </summary>
[TestClass]
public sealed partial class ProtocolDocTests
{
    private static readonly Lazy<string> Doc = new(() => File.ReadAllText(Path.Combine(RepositoryRoot(), "docs", "protocol.md")));

    [TestMethod]
    public void Every_request_has_exactly_one_row_in_the_doc_table_with_its_number()
    {
        var rows = TableRows();
        var requests = Requests().Where(r => r.Type is not (FrameType.Hello or FrameType.GatewayHello)).ToList();
        CollectionAssert.AreEquivalent(requests.Select(r => r.Type.ToString()).ToList(), rows.Select(r => r.Name).ToList(), "the table's requests against the request records");
        foreach (var row in rows)
        {
            Assert.AreEqual((byte)Enum.Parse<FrameType>(row.Name), row.Number, $"{row.Name}'s number in docs/protocol.md");
        }
    }

    [TestMethod]
    public void Every_request_row_lists_the_fields_of_its_request_and_answer_records_in_order()
    {
        var rows = TableRows().ToDictionary(r => r.Name);
        foreach (var (type, request, reply) in Requests().Where(r => r.Type is not (FrameType.Hello or FrameType.GatewayHello)))
        {
            var row = rows[type.ToString()];
            AssertSameFields(row.Request, request, $"{type}'s request");
            AssertSameFields(row.Ok, reply, $"{type}'s Ok");
        }
    }

    [TestMethod]
    public void The_handshake_error_push_and_mapping_lines_list_the_fields_of_their_records()
    {
        AssertSameFields(CodeAfter("`Hello (1)`: "), typeof(Hello), "Hello");
        AssertSameFields(CodeAfter("`Ok`: "), typeof(HelloOk), "Hello's Ok");
        AssertSameFields(CodeAfter($"`GatewayHello ({(byte)FrameType.GatewayHello})`: "), typeof(GatewayHello), "GatewayHello (its number too)");
        AssertSameFields(CodeAfter("`Error (129)`: "), typeof(Error), "Error");
        AssertSameFields(CodeAfter("`CloseSlab (130)`, request id 0: "), typeof(CloseSlab), "CloseSlab");
        AssertSameFields(CodeAfter("A **mapping** is "), typeof(Mapping), "a mapping");
        AssertSameFields(CodeAfter("A **trace context** is "), typeof(TraceContext), "a trace context");
        StringAssert.Contains(Doc.Value, $"# The FaaSTube wire protocol (version {Frames.Version})", "the doc's version is the protocol's");
    }

    [TestMethod]
    public void A_doc_row_that_differs_from_its_record_is_found()
    {
        var wrongType = Assert.ThrowsExactly<AssertFailedException>(() => AssertSameFields("id, i32 offset", typeof(Get), "Get"));
        StringAssert.Contains(wrongType.Message, "i32 device");
        Assert.ThrowsExactly<AssertFailedException>(() => AssertSameFields("i32 device, id", typeof(Get), "Get"), "the order");
        Assert.ThrowsExactly<AssertFailedException>(() => AssertSameFields("id, i32 device, u8 more", typeof(Get), "Get"), "one too many");
        Assert.ThrowsExactly<AssertFailedException>(() => AssertSameFields("-", typeof(WhereOk), "Where's Ok"), "nothing where a field is");
    }

    /// <summary>The request records, each with its frame type and its answer's record.</summary>
    internal static IEnumerable<(FrameType Type, Type Request, Type Reply)> Requests() =>
        typeof(Payload).Assembly.GetTypes()
            .Select(t => (Type: t, Request: t.GetInterfaces().SingleOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IRequest<>))))
            .Where(t => t.Request is not null)
            .Select(t => ((FrameType)t.Type.GetProperty(nameof(IRequest<Empty>.Type))!.GetValue(Activator.CreateInstance(t.Type))!, t.Type, t.Request!.GetGenericArguments()[0]))
            .OrderBy(t => t.Item1);

    /// <summary>Every payload record.</summary>
    internal static IEnumerable<Type> PayloadTypes() =>
        typeof(Payload).Assembly.GetTypes().Where(t => t.GetInterfaces().Any(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IPayload<>))).OrderBy(t => t.Name);

    /// <summary>A record's fields: its primary constructor's parameters, in order (none for a record without one).</summary>
    internal static ParameterInfo[] Fields(Type record) =>
        record.GetConstructors().OrderByDescending(c => c.GetParameters().Length).FirstOrDefault()?.GetParameters() ?? [];

    /// <summary>A field's wire type by the convention of src/FaaSTube/Channels/Protocol/Payload.cs.</summary>
    internal static string WireType(ParameterInfo field)
    {
        if (field.GetCustomAttribute<WireAttribute>() is { } wire)
        {
            return wire.Type;
        }

        var type = Nullable.GetUnderlyingType(field.ParameterType) ?? field.ParameterType;
        type = type.IsEnum ? Enum.GetUnderlyingType(type) : type;
        return type == typeof(byte) || type == typeof(bool) ? "u8"
            : type == typeof(ushort) ? "u16"
            : type == typeof(int) ? "i32"
            : type == typeof(long) ? "i64"
            : type == typeof(TubeId) ? "id"
            : type == typeof(byte[]) ? "bytes"
            : PayloadTypes().Contains(type) ? type.Name.ToLowerInvariant()
            : throw new AssertFailedException($"{field.Member.DeclaringType?.Name}.{field.Name}: no wire type follows from {type.Name}; give it a [Wire].");
    }

    internal static string DocName(ParameterInfo field) => UpperInside().Replace(field.Name!, "-$1").ToLowerInvariant();

    private static void AssertSameFields(string doc, Type record, string what)
    {
        var inDoc = string.Join(", ", DocFields(doc));
        var inCode = string.Join(", ", Fields(record).Select(f => $"{WireType(f)} {DocName(f)}"));
        Assert.AreEqual(inCode, inDoc, $"{what}: docs/protocol.md lists [{inDoc}], {record.Name} has [{inCode}]");
    }

    private static List<string> DocFields(string text)
    {
        var plain = Comment().Replace(text, "").Trim();
        return plain is "-" or ""
            ? []
            : plain.Split(',').Select(f => f.Split(' ', StringSplitOptions.RemoveEmptyEntries) switch
            {
                [var type] => $"{type} {type}",
                [var type, var name] => $"{type} {name}",
                _ => throw new AssertFailedException($"'{f.Trim()}' in docs/protocol.md: a field is 'type name' or a bare type."),
            }).ToList();
    }

    private static List<(string Name, int Number, string Request, string Ok)> TableRows()
    {
        var rows = Doc.Value.Split('\n').Select(l => Row().Match(l.TrimEnd('\r'))).Where(m => m.Success)
            .Select(m => (m.Groups["name"].Value, int.Parse(m.Groups["number"].Value, System.Globalization.CultureInfo.InvariantCulture), m.Groups["request"].Value, m.Groups["ok"].Value))
            .ToList();
        Assert.IsNotEmpty(rows, "docs/protocol.md has no request/answer table");
        return rows;
    }

    /// <summary>The code span that follows <paramref name="marker"/> in the doc.</summary>
    private static string CodeAfter(string marker)
    {
        int at = Doc.Value.IndexOf(marker, StringComparison.Ordinal);
        Assert.IsGreaterThanOrEqualTo(0, at, $"docs/protocol.md has no '{marker}'");
        int start = Doc.Value.IndexOf('`', at + marker.Length) + 1;
        Assert.AreEqual(at + marker.Length + 1, start, $"a code span right after '{marker}'");
        return Doc.Value[start..Doc.Value.IndexOf('`', start)];
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "FaaSTube.sln")))
            {
                return dir.FullName;
            }
        }

        throw new AssertFailedException($"No FaaSTube.sln above {AppContext.BaseDirectory}.");
    }

    [GeneratedRegex(@"^\| (?<name>\w+) \((?<number>\d+)\) \| (?<request>[^|]*) \| (?<ok>[^|]*) \|$")]
    private static partial Regex Row();

    [GeneratedRegex(@"\([^()]*\)")]
    private static partial Regex Comment();

    [GeneratedRegex(@"(?<!^)([A-Z])")]
    private static partial Regex UpperInside();
}
