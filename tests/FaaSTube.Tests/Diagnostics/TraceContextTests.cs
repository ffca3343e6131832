using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Sockets;
using FaaSTube.Channels;
using FaaSTube.Channels.Protocol;
using FaaSTube.Channels.Protocol.Messages;
using FaaSTube.Channels.Transport;
using FaaSTube.Diagnostics;
using FaaSTube.Native;
using FaaSTube.Tests.Support;
using Microsoft.Win32.SafeHandles;

namespace FaaSTube.Tests.Diagnostics;

/// <summary>
/// Client and node spans join one trace: the client's call is a client span, the node's handling of
/// each request a server span whose parent came in the request (socket, control ring) or with the
/// call (in process), the transfer under it an internal span. A malformed trace context is refused
/// for its request, never more.
/// </summary>
[TestClass]
public sealed class TraceContextTests
{
    private const string TestSource = "FaaSTube.Tests.Traces";

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [DataRow("socket")]
    [DataRow("ring")]
    [DataRow("in-process")]
    public async Task A_client_span_and_the_nodes_spans_share_one_trace(string transport)
    {
        var random = Seeds.Create(TestContext);
        using var spans = new SpanCollector(TestSource);
        using var source = new ActivitySource(TestSource);
        await using var h = await NodeHarness.StartAsync(configure: o => o.ContinueClientTraces = true);
        var client = await h.ConnectAsync(inProcess: transport == "in-process", controlRingBytes: transport == "ring" ? 64 << 10 : 0);
        Assert.AreEqual(transport == "ring", client.UsesControlRing, "the transport under test");
        var data = random.Bytes(random.Next(client.WindowSlotLength + 1, 1 << 20)); // over a slot: PutBegin, parts, PutCommit
        var small = random.Bytes(random.Next(1, client.WindowSlotLength + 1)); // one request: PutWhole

        ActivityTraceId trace;
        TubeId id;
        using (var root = source.StartActivity("test"))
        {
            Assert.IsNotNull(root, "the test's own span is listened to");
            trace = root.TraceId;
            id = await client.PutAsync(data);
            var back = new byte[data.Length];
            await client.GetAsync(id, back);
            CollectionAssert.AreEqual(data, back);
            await Assert.ThrowsAsync<TubeException>(async () => await client.WhereAsync(TubeId.NewId()));
            await client.PutAsync(small);
        }

        var ours = spans.Of(trace);
        TestContext.WriteLine(string.Join(Environment.NewLine, ours.Select(s => $"{s.DisplayName} {s.Kind} {s.SpanId} <- {s.ParentSpanId}"))); // the trace, to read when an assertion fails
        var puts = ours.Where(s => s.DisplayName == "faastube.put").ToList();
        Assert.HasCount(2, puts, "the client's two puts");
        var put = puts[0];
        var whole = ours.Single(s => s.DisplayName == "faastube.put_whole");
        Assert.AreEqual(puts[1].SpanId, whole.ParentSpanId, "the small Put is one node span under the client's second put");
        Assert.IsTrue(ours.Any(s => s.DisplayName == "faastube.transfer" && s.ParentSpanId == whole.SpanId && Equals(s.GetTagItem(TelemetryTags.TransferDirection), "host_to_device")), "with its DMA under it");
        Assert.IsFalse(ours.Any(s => s.DisplayName is "faastube.put_begin" or "faastube.put_commit" && s.ParentSpanId == puts[1].SpanId), "and no other request");
        Assert.AreEqual(ActivityKind.Client, put.Kind);
        Assert.AreEqual("host_staged", put.GetTagItem(TelemetryTags.Path));
        foreach (var request in new[] { "faastube.put_begin", "faastube.put_part", "faastube.put_commit" })
        {
            var served = ours.Where(s => s.DisplayName == request).ToList();
            Assert.IsNotEmpty(served, $"{request}: the node's span is in the client's trace over {transport}");
            foreach (var span in served)
            {
                Assert.AreEqual(ActivityKind.Server, span.Kind, request);
                Assert.AreEqual(put.SpanId, span.ParentSpanId, $"{request}: a child of the client's put");
                Assert.AreEqual("wf", span.GetTagItem(TelemetryTags.Workflow));
            }
        }

        var part = ours.First(s => s.DisplayName == "faastube.put_part");
        var transfer = ours.FirstOrDefault(s => s.DisplayName == "faastube.transfer" && s.ParentSpanId == part.SpanId);
        Assert.IsNotNull(transfer, "the part's DMA is an internal span under the node's span");
        Assert.AreEqual(ActivityKind.Internal, transfer.Kind);
        Assert.AreEqual("host_to_device", transfer.GetTagItem(TelemetryTags.TransferDirection));

        var get = ours.Single(s => s.DisplayName == "faastube.get_to_memory");
        Assert.AreEqual(ActivityKind.Client, get.Kind);
        Assert.AreEqual(id.ToString(), get.GetTagItem(TelemetryTags.DataId));
        Assert.IsTrue(ours.Any(s => s.DisplayName == "faastube.get_whole" && s.Kind == ActivityKind.Server && s.ParentSpanId == get.SpanId && Equals(s.GetTagItem(TelemetryTags.DataId), id.ToString())), "the node's Get (a GetWhole: over a slot, it comes back leased) under the client's, naming the data");
        Assert.IsTrue(ours.Any(s => s.DisplayName == "faastube.get_to_host" && s.Kind == ActivityKind.Server && s.ParentSpanId == get.SpanId), "and its parts");
        Assert.IsTrue(ours.Any(s => s.DisplayName == "faastube.transfer" && Equals(s.GetTagItem(TelemetryTags.TransferDirection), "device_to_host")), "the parts' DMA");

        var where = ours.Single(s => s.DisplayName == "faastube.where" && s.Kind == ActivityKind.Client);
        var refused = ours.Single(s => s.DisplayName == "faastube.where" && s.Kind == ActivityKind.Server);
        Assert.AreEqual(where.SpanId, refused.ParentSpanId);
        foreach (var failed in new[] { where, refused })
        {
            Assert.AreEqual(ActivityStatusCode.Error, failed.Status, $"{failed.Kind}: the refusal is the span's status");
            Assert.AreEqual("NotFound", failed.GetTagItem(TelemetryTags.ErrorType));
            Assert.IsFalse(string.IsNullOrEmpty(failed.StatusDescription), "with a description");
        }
    }

    /// <summary>
    /// By default a client's trace context is a link, not a parent: the node's span of its request
    /// starts a trace of its own, so a client that marks its requests sampled does not decide what the
    /// node records (the node's sampler does); the link still leads from the node's span to the client's.
    /// </summary>
    [TestMethod]
    [DataRow("socket")]
    [DataRow("ring")]
    public async Task By_default_the_nodes_span_links_to_the_clients_span_and_takes_no_parent_from_it(string transport)
    {
        using var spans = new SpanCollector(TestSource);
        using var source = new ActivitySource(TestSource);
        await using var h = await NodeHarness.StartAsync();
        Assert.IsFalse(h.Node.Options.ContinueClientTraces, "the default");
        var client = await h.ConnectAsync(inProcess: false, controlRingBytes: transport == "ring" ? 64 << 10 : 0);
        Activity? put;
        using (source.StartActivity("test"))
        {
            await client.PutAsync(new byte[4096]);
            put = spans.All.LastOrDefault(s => s.DisplayName == "faastube.put");
        }

        Assert.IsNotNull(put, "the client's put span");
        Assert.IsFalse(spans.Of(put.TraceId).Any(s => s.Kind == ActivityKind.Server), "no node span joined the client's trace");
        var served = spans.All.Where(s => s.DisplayName == "faastube.put_whole" && s.Links.Any(l => l.Context.SpanId == put.SpanId)).ToList();
        Assert.HasCount(1, served, "the node's Put (one request: 4 KiB fits a slot) links to the client's put");
        Assert.AreEqual(default, served[0].ParentSpanId, "and is a root of its own");
        Assert.AreNotEqual(put.TraceId, served[0].TraceId);
    }

    [TestMethod]
    public async Task Without_a_span_on_the_client_the_nodes_span_starts_a_trace_of_its_own()
    {
        using var spans = new SpanCollector(TestSource);
        await using var h = await NodeHarness.StartAsync(configure: o => o.ContinueClientTraces = true);
        string workflow = $"untraced-{Guid.NewGuid():N}";
        var client = await h.ConnectAsync(inProcess: false, workflow: workflow, controlRingBytes: 0);
        Activity.Current = null;
        await client.PutAsync(new byte[4096]);
        var put = spans.All.Single(s => s.DisplayName == "faastube.put" && Equals(s.GetTagItem(TelemetryTags.Workflow), workflow));
        Assert.AreEqual(default, put.ParentSpanId, "the client's put is a root");
        Assert.IsTrue(spans.Of(put.TraceId).Any(s => s.DisplayName == "faastube.put_whole" && s.ParentSpanId == put.SpanId), "and the node's spans are its children");
    }

    /// <summary>
    /// Hand-written frames whose trace context a correct client could not have written: each is
    /// refused with BadRequest naming what is wrong, for that request only; the same connection then
    /// serves a request with a valid context.
    /// </summary>
    [TestMethod]
    public async Task A_malformed_trace_context_in_a_hand_written_frame_is_refused_for_that_request_and_the_session_goes_on()
    {
        var random = Seeds.Create(TestContext);
        await using var h = await NodeHarness.StartAsync();
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(h.Socket));
        using var window = Memfd(1 << 20);
        UnixRights.Send(socket, Frames.Encode(FrameType.Hello, 1, new PayloadWriter().U16(Frames.Version).Str("wf").Str("f").I64(1 << 20).I64(0).Memory.Span), window);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        var reader = PipeReader.Create(stream);
        using var timeout = new CancellationTokenSource(ChildProcess.Timeout);
        Assert.AreEqual(FrameType.Ok, (await Frames.ReadAsync(reader, 1 << 16, timeout.Token))!.Value.Type, "the hand-written Hello is accepted");

        const string Valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        var cases = new List<(string Traceparent, string Tracestate, string Why)>
        {
            (Valid.ToUpperInvariant(), "", "uppercase hex"),
            ("01" + Valid[2..], "", "a version this protocol does not send"),
            ("ff" + Valid[2..], "", "the forbidden version ff"),
            (Valid + "-00", "", "a later version's extra field"),
            (Valid[..54], "", "one character short"),
            ("00-00000000000000000000000000000000-b7ad6b7169203331-01", "", "an all-zero trace id"),
            ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", "", "an all-zero parent id"),
            (Valid.Replace('-', '_'), "", "no hyphens"),
            (new string('x', 4000), "", "a long string"),
            (Valid, "congo=t61rcWkgMzE\u0001", "a control character in the tracestate"),
            (Valid, new string('a', TraceContext.MaxTracestateLength + 1), "a tracestate over 512 bytes"),
            ("", "congo=t61rcWkgMzE", "a tracestate without a traceparent"),
        };
        for (int i = 0; i < 20; i++)
        {
            // A valid traceparent with one character in its fields made something hex never is.
            var chars = Valid.ToCharArray();
            int at = random.Next(Valid.Length);
            chars[at] = "GZgz_ +./-é"[random.Next(11)];
            if (chars[at] == '-' && Valid[at] == '-')
            {
                chars[at] = 'g';
            }

            cases.Add((new string(chars), "", $"character {at} made '{chars[at]}'"));
        }

        uint requestId = 10;
        foreach (var (traceparent, tracestate, why) in cases)
        {
            var payload = new PayloadWriter().Str(traceparent).Str(tracestate).Id(TubeId.NewId());
            await socket.SendAsync(Frames.Encode(FrameType.Where, ++requestId, payload.Memory.Span), timeout.Token);
            var reply = (await Frames.ReadAsync(reader, 1 << 16, timeout.Token))!.Value;
            Assert.AreEqual(FrameType.Error, reply.Type, why);
            Assert.AreEqual(requestId, reply.RequestId, why);
            var error = Payload.Read<Error>(reply.Payload);
            Assert.AreEqual(TubeError.BadRequest, error.Code, why);
            StringAssert.Contains(error.Message, "trace", why);
        }

        // The session goes on: a valid context, an id nobody has.
        await socket.SendAsync(Frames.Encode(FrameType.Where, ++requestId, new PayloadWriter().Str(Valid).Str("congo=t61rcWkgMzE").Id(TubeId.NewId()).Memory.Span), timeout.Token);
        var found = (await Frames.ReadAsync(reader, 1 << 16, timeout.Token))!.Value;
        Assert.AreEqual(requestId, found.RequestId);
        Assert.AreEqual(TubeError.NotFound, Payload.Read<Error>(found.Payload).Code, "the request itself was read and answered");
        Assert.AreEqual(1, h.Node.SessionCount, "the connection is still open");
        await reader.CompleteAsync();
    }

    [TestMethod]
    public void The_strict_parser_takes_exactly_version_00s_form()
    {
        Assert.IsTrue(TraceContext.TryParse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", out var trace, out var span, out var flags));
        Assert.AreEqual("0af7651916cd43dd8448eb211c80319c", trace.ToHexString());
        Assert.AreEqual("b7ad6b7169203331", span.ToHexString());
        Assert.AreEqual(ActivityTraceFlags.Recorded, flags);
        Assert.IsTrue(TraceContext.TryParse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", out _, out _, out flags));
        Assert.AreEqual(ActivityTraceFlags.None, flags);
        Assert.IsFalse(TraceContext.TryParse("", out _, out _, out _));

        using var activity = new Activity("test").SetIdFormat(ActivityIdFormat.W3C).Start();
        activity.TraceStateString = "congo=t61rcWkgMzE";
        var context = TraceContext.Of(activity);
        Assert.AreEqual(activity.Id, context.Traceparent, "what the client sends is the activity's W3C id");
        Assert.AreEqual("congo=t61rcWkgMzE", context.Tracestate);
        var parent = context.ToParent();
        Assert.AreEqual(activity.TraceId, parent.TraceId);
        Assert.AreEqual(activity.SpanId, parent.SpanId);
        Assert.IsTrue(parent.IsRemote);
        activity.TraceStateString = "bad\u0001state";
        Assert.AreEqual("", TraceContext.Of(activity).Tracestate, "a tracestate the node would refuse is left out, not sent");
        Assert.AreEqual(TraceContext.None, TraceContext.Of(null));
    }

    private static SafeFileHandle Memfd(int bytes)
    {
        int fd = Interop.Libc.memfd_create("test-window", Interop.Libc.MFD_CLOEXEC | Interop.Libc.MFD_ALLOW_SEALING);
        Assert.IsGreaterThanOrEqualTo(0, fd);
        Assert.AreEqual(0, Interop.Libc.ftruncate(fd, bytes));
        Assert.AreEqual(0, Interop.Libc.fcntl(fd, Interop.Libc.F_ADD_SEALS, FaaSTube.Platform.SealedSharedMemory.RequiredSeals));
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>Every FaaSTube span (and the test's own) that stops while it lives, all sampled.</summary>
    private sealed class SpanCollector : IDisposable
    {
        private readonly ActivityListener _listener;
        private readonly ConcurrentQueue<Activity> _stopped = new();

        public SpanCollector(string testSource)
        {
            _listener = new ActivityListener
            {
                ShouldListenTo = s => s.Name == Telemetry.Name || s.Name == testSource,
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
                ActivityStopped = _stopped.Enqueue,
            };
            ActivitySource.AddActivityListener(_listener);
        }

        public List<Activity> All => [.. _stopped];

        public List<Activity> Of(ActivityTraceId trace) => [.. _stopped.Where(a => a.TraceId == trace)];

        public void Dispose() => _listener.Dispose();
    }
}
