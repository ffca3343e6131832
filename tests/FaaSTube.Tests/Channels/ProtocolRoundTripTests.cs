using System.Reflection;
using System.Runtime.ExceptionServices;
using System.Text;
using FaaSTube.Channels;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Channels;

/// <summary>
/// Every message record of src/FaaSTube/Channels/Protocol/Messages with random values: Read gives back
/// what Write wrote, the bytes are the fields the doc's convention names (read one by one by their
/// wire types), and every truncated payload is an <see cref="InvalidDataException"/>.
/// </summary>
[TestClass]
public sealed class ProtocolRoundTripTests
{
    private const int Rounds = 100;
    private static readonly string[] Pieces = ["a", "Z", "0", "-", "_", " ", ".", "é", "ß", "漢", "😀"];

    public TestContext TestContext { get; set; } = null!;

    public static IEnumerable<object[]> Messages() => ProtocolDocTests.PayloadTypes().Select(t => new object[] { t.Name });

    [TestMethod]
    [DynamicData(nameof(Messages))]
    public void Write_then_Read_gives_the_same_record_and_a_truncated_payload_is_refused(string message)
    {
        var type = ProtocolDocTests.PayloadTypes().Single(t => t.Name == message);
        var random = Seeds.Create(TestContext);
        for (int round = 0; round < Rounds; round++)
        {
            var record = Create(type, random);
            var bytes = Write(type, record);
            Assert.AreEqual(record, Read(type, bytes), $"{record} read back");
            AssertFieldsByWireType(type, record, bytes);

            var fields = ProtocolDocTests.Fields(type);
            int? shorter = fields.Length > 0 && Nullable.GetUnderlyingType(fields[^1].ParameterType) is not null
                ? Write(type, With(type, record, fields.Length - 1, null)).Length // an optional last field: the payload may end before it
                : null;
            for (int n = 0; n < bytes.Length; n++)
            {
                if (n == shorter)
                {
                    Assert.AreEqual(With(type, record, fields.Length - 1, null), Read(type, bytes[..n]), "without its optional last field");
                    continue;
                }

                Assert.ThrowsExactly<InvalidDataException>(() => Read(type, bytes[..n]), $"{record} cut to {n} of {bytes.Length} bytes");
            }
        }
    }

    [TestMethod]
    public void Every_message_record_is_tested()
    {
        Assert.IsGreaterThanOrEqualTo(17, Messages().Count(), "requests, answers, Hello, Error, CloseSlab and the mapping");
    }

    [TestMethod]
    public void A_hello_of_another_version_is_a_version_mismatch_whatever_follows()
    {
        var bytes = new PayloadWriter().U16(1).Str("wf").Str("f").Str("faastube-win.1.x").I64(4096).Memory.ToArray();
        var refused = Assert.ThrowsExactly<TubeException>(() => Payload.Read<Hello>(bytes));
        Assert.AreEqual(TubeError.VersionMismatch, refused.Error);
    }

    [TestMethod]
    public void A_gateway_hello_with_a_key_of_another_length_is_malformed_and_of_another_version_a_version_mismatch()
    {
        foreach (int length in new[] { 0, GatewayHello.KeyBytes - 1, GatewayHello.KeyBytes + 1, int.MaxValue, -1 })
        {
            var bytes = new PayloadWriter().U16(Frames.Version).I32(length).Raw(new byte[Math.Clamp(length, 0, 64)]).Str("wf").Str("f").I64(1 << 20).Memory.ToArray();
            Assert.ThrowsExactly<InvalidDataException>(() => Payload.Read<GatewayHello>(bytes), $"a key of {length} bytes");
        }

        var old = new PayloadWriter().U16(Frames.Version - 1).Bytes(new byte[GatewayHello.KeyBytes]).Str("wf").Str("f").I64(1 << 20).Memory.ToArray();
        Assert.AreEqual(TubeError.VersionMismatch, Assert.ThrowsExactly<TubeException>(() => Payload.Read<GatewayHello>(old)).Error);
        var hello = new GatewayHello(Frames.Version, [.. Enumerable.Range(1, GatewayHello.KeyBytes).Select(i => (byte)i)], "wf", "f", 1 << 20, 1 << 17);
        StringAssert.DoesNotMatch(hello.ToString(), new System.Text.RegularExpressions.Regex("Key"), "the key is never printed");
    }

    /// <summary>The bytes read field by field as the convention says give the record's values, and nothing is left.</summary>
    private static void AssertFieldsByWireType(Type type, object record, byte[] bytes)
    {
        var reader = new PayloadReader(bytes);
        ReadFields(type, record, ref reader);
        Assert.IsTrue(reader.AtEnd, $"{record}: bytes after its fields");
    }

    private static void ReadFields(Type type, object record, ref PayloadReader reader)
    {
        foreach (var field in ProtocolDocTests.Fields(type))
        {
            object? value = type.GetProperty(field.Name!)!.GetValue(record);
            value = value is Enum e ? Convert.ChangeType(e, Enum.GetUnderlyingType(e.GetType()), System.Globalization.CultureInfo.InvariantCulture) : value;
            string wire = ProtocolDocTests.WireType(field);
            string what = $"{type.Name}.{field.Name} as {wire}";
            switch (wire)
            {
                case "u8": Assert.AreEqual(value is bool b ? (b ? 1 : 0) : Convert.ToInt32(value, System.Globalization.CultureInfo.InvariantCulture), reader.U8(), what); break;
                case "u16": Assert.AreEqual(Convert.ToInt32(value, System.Globalization.CultureInfo.InvariantCulture), reader.U16(), what); break;
                case "i32": Assert.AreEqual(value, reader.I32(), what); break;
                case "i64": Assert.AreEqual(value, reader.I64(), what); break;
                case "id": Assert.AreEqual(value, reader.Id(), what); break;
                case "bytes": CollectionAssert.AreEqual((byte[])value!, reader.Bytes(), what); break;
                case "str": Assert.AreEqual(value, reader.Str(), what); break;
                case "name": Assert.AreEqual(value, reader.Name(), what); break;
                default:
                    if (value is not null)
                    {
                        ReadFields(value.GetType(), value, ref reader); // a nested payload
                    }

                    break;
            }
        }
    }

    private static object Create(Type type, Random random)
    {
        if (type == typeof(TraceContext))
        {
            return RandomTraceContext(random); // its reader checks the W3C form: random text is not one
        }

        var fields = ProtocolDocTests.Fields(type);
        return fields.Length == 0 ? Activator.CreateInstance(type)! : New(type, fields.Select(f => Value(f, random)).ToArray());
    }

    /// <summary>None, or a version 00 traceparent of random ids and flags with a tracestate of random printable ASCII (perhaps empty).</summary>
    internal static TraceContext RandomTraceContext(Random random)
    {
        if (random.Next(4) == 0)
        {
            return TraceContext.None;
        }

        string Hex(int bytes) => Convert.ToHexStringLower(random.Bytes(bytes)) is var h && h.Trim('0').Length > 0 ? h : "1" + h[1..];
        string state = new([.. Enumerable.Range(0, random.Next(0, 40)).Select(_ => (char)random.Next(' ', '~' + 1))]);
        return new TraceContext($"00-{Hex(16)}-{Hex(8)}-{Hex(1)}", state);
    }

    private static object? Value(ParameterInfo field, Random random)
    {
        var type = field.ParameterType;
        if (Nullable.GetUnderlyingType(type) is { } inner)
        {
            return random.Next(3) == 0 ? null : Create(inner, random);
        }

        string wire = ProtocolDocTests.WireType(field);
        return field.Name == "Version" ? Frames.Version
            : type == typeof(bool) ? random.Next(2) == 1
            : type.IsEnum ? Enum.GetValues(type).GetValue(random.Next(Enum.GetValues(type).Length)) // readers may refuse values the enum does not define
            : type == typeof(byte) ? (byte)random.Next(256)
            : type == typeof(ushort) ? (ushort)random.Next(65536)
            : type == typeof(int) ? random.Next(int.MinValue, int.MaxValue)
            : type == typeof(long) ? random.NextInt64(long.MinValue, long.MaxValue)
            : type == typeof(TubeId) ? new TubeId((ulong)random.NextInt64(), (ulong)random.NextInt64())
            : type == typeof(byte[]) ? random.Bytes(field.Member.DeclaringType == typeof(GatewayHello) ? GatewayHello.KeyBytes : random.Next(0, 100)) // the gateway's key has one length
            : type == typeof(string) ? Text(random, wire == "name" ? Frames.MaxNameBytes : 4096)
            : Create(type, random);
    }

    /// <summary>Valid UTF-8 (some characters of 2, 3 and 4 bytes), no control characters, at most <paramref name="maxBytes"/> bytes.</summary>
    private static string Text(Random random, int maxBytes)
    {
        var text = new StringBuilder();
        int target = random.Next(0, maxBytes + 1);
        while (true)
        {
            var piece = Pieces[random.Next(Pieces.Length)];
            if (Encoding.UTF8.GetByteCount(text.ToString()) + Encoding.UTF8.GetByteCount(piece) > target)
            {
                return text.ToString();
            }

            text.Append(piece);
        }
    }

    private static object With(Type type, object record, int index, object? value)
    {
        var args = ProtocolDocTests.Fields(type).Select(f => type.GetProperty(f.Name!)!.GetValue(record)).ToArray();
        args[index] = value;
        return New(type, args);
    }

    private static object New(Type type, object?[] args) =>
        type.GetConstructors().Single(c => c.GetParameters().Length == args.Length).Invoke(args);

    private static byte[] Write(Type type, object record) => (byte[])Call(nameof(WriteAs), type, record);

    private static object Read(Type type, byte[] bytes) => Call(nameof(ReadAs), type, bytes);

    private static object Call(string method, Type type, object argument)
    {
        try
        {
            return typeof(ProtocolRoundTripTests).GetMethod(method, BindingFlags.NonPublic | BindingFlags.Static)!.MakeGenericMethod(type).Invoke(null, [argument])!;
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            ExceptionDispatchInfo.Throw(e.InnerException);
            throw;
        }
    }

    private static byte[] WriteAs<T>(object record)
        where T : IPayload<T> => Payload.Writer((T)record).Memory.ToArray();

    private static object ReadAs<T>(byte[] bytes)
        where T : IPayload<T> => Payload.Read<T>(bytes);
}
