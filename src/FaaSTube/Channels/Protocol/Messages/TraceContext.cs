using System.Diagnostics;

namespace FaaSTube.Channels.Protocol.Messages;

/// <summary>
/// The trace context a request travels with (the W3C Trace Context traceparent and tracestate): it begins
/// every request's payload after Hello, so the node's span of the request joins the client's trace.
/// Empty strings: none (the node's span starts a trace of its own). Read strictly: a traceparent that
/// is not exactly version 00's form, or a tracestate over 512 bytes or with bytes outside printable
/// ASCII, is a malformed payload (<c>BadRequest</c> for that request).
/// </summary>
internal readonly record struct TraceContext([Wire("str")] string Traceparent, [Wire("str")] string Tracestate) : IPayload<TraceContext>
{
    /// <summary>The length of a version 00 traceparent: <c>00-</c>, 32 hex digits, <c>-</c>, 16, <c>-</c>, 2.</summary>
    public const int TraceparentLength = 55;

    /// <summary>The longest tracestate (the W3C limit).</summary>
    public const int MaxTracestateLength = 512;

    /// <summary>No trace context.</summary>
    public static TraceContext None => new("", "");

    /// <summary>The context of <paramref name="activity"/> (the caller's current span), or none when there is no span or it is not a W3C one; a tracestate this protocol would refuse is left out.</summary>
    public static TraceContext Of(Activity? activity)
    {
        if (activity is null || activity.IdFormat != ActivityIdFormat.W3C)
        {
            return None;
        }

        string flags = ((byte)activity.ActivityTraceFlags).ToString("x2", System.Globalization.CultureInfo.InvariantCulture); // every flag as the span has it (W3C level 2 adds "random", 0x02); the node reads only "sampled"
        string state = activity.TraceStateString is { } s && IsValidTracestate(s) ? s : "";
        return new($"00-{activity.TraceId.ToHexString()}-{activity.SpanId.ToHexString()}-{flags}", state);
    }

    /// <summary>A request's payload so far: the caller's trace context (<see cref="Activity.Current"/>), which every request after Hello begins with (docs/protocol.md).</summary>
    public static PayloadWriter BeginPayload()
    {
        var payload = new PayloadWriter();
        Of(Activity.Current).Write(payload);
        return payload;
    }

    public void Write(PayloadWriter writer) => writer.Str(Traceparent).Str(Tracestate);

    /// <summary>Reads and checks both fields; <see cref="InvalidDataException"/> names what is wrong.</summary>
    public static TraceContext Read(ref PayloadReader reader)
    {
        var context = new TraceContext(Field(ref reader, TraceparentLength, "traceparent"), Field(ref reader, MaxTracestateLength, "tracestate"));
        if (context.Traceparent.Length != 0 && !TryParse(context.Traceparent, out _, out _, out _))
        {
            throw new InvalidDataException("The request's traceparent is malformed: it must be empty or '00-' followed by 32 and 16 lowercase hex digits (neither all zeros) and 2 of flags, separated by '-'.");
        }

        if (!IsValidTracestate(context.Tracestate))
        {
            throw new InvalidDataException($"The request's tracestate is malformed: at most {MaxTracestateLength} bytes of printable ASCII.");
        }

        if (context.Traceparent.Length == 0 && context.Tracestate.Length != 0)
        {
            throw new InvalidDataException("The request has a tracestate without a traceparent.");
        }

        return context;
    }

    /// <summary>One field, its length checked against <paramref name="max"/> before a byte of it is decoded.</summary>
    private static string Field(ref PayloadReader reader, int max, string name)
    {
        try
        {
            return reader.Str(max);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"The request's {name} is malformed: {e.Message}", e);
        }
    }

    /// <summary>The remote parent the node's span takes; default (none) when the request carried no context.</summary>
    public ActivityContext ToParent() =>
        TryParse(Traceparent, out var trace, out var span, out var flags) ? new ActivityContext(trace, span, flags, Tracestate.Length == 0 ? null : Tracestate, isRemote: true) : default;

    /// <summary>
    /// A version 00 traceparent, strictly: 55 characters, lowercase hex fields, a trace id and a
    /// parent id that are not all zeros. Later versions are refused too: this protocol sends 00.
    /// </summary>
    internal static bool TryParse(ReadOnlySpan<char> text, out ActivityTraceId trace, out ActivitySpanId span, out ActivityTraceFlags flags)
    {
        trace = default;
        span = default;
        flags = default;
        if (text.Length != TraceparentLength || text[2] != '-' || text[35] != '-' || text[52] != '-' || !text.StartsWith("00"))
        {
            return false;
        }

        var traceHex = text[3..35];
        var spanHex = text[36..52];
        var flagsHex = text[53..55];
        if (!IsLowerHex(traceHex) || !IsLowerHex(spanHex) || !IsLowerHex(flagsHex) || AllZeros(traceHex) || AllZeros(spanHex))
        {
            return false;
        }

        trace = ActivityTraceId.CreateFromString(traceHex);
        span = ActivitySpanId.CreateFromString(spanHex);
        flags = (ActivityTraceFlags)(Convert.ToByte(flagsHex.ToString(), 16) & (byte)ActivityTraceFlags.Recorded);
        return true;
    }

    private static bool IsValidTracestate(string state) =>
        state.Length <= MaxTracestateLength && state.All(c => c is >= ' ' and <= '~');

    private static bool IsLowerHex(ReadOnlySpan<char> text)
    {
        foreach (char c in text)
        {
            if (c is not (>= '0' and <= '9') and not (>= 'a' and <= 'f'))
            {
                return false;
            }
        }

        return true;
    }

    private static bool AllZeros(ReadOnlySpan<char> text) => !text.ContainsAnyExcept('0');
}
