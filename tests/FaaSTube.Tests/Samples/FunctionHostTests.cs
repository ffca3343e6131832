using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using FaaSTube.Channels;
using FaaSTube.Devices;
using FaaSTube.Samples.FunctionHost.Functions;
using FaaSTube.Samples.FunctionHost.Hosting;
using FaaSTube.Samples.Traffic;
using FaaSTube.Tests.Support;

namespace FaaSTube.Tests.Samples;

/// <summary>
/// samples/FaaSTube.Samples.FunctionHost on real Kestrel on loopback: a request through the gateway
/// gives the workflow sample's result; a malformed id is the caller's fault (400 with a code, no stack
/// trace); a function whose node is away answers 503 NodeUnavailable.
/// </summary>
[TestClass]
public sealed class FunctionHostTests
{
    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    public async Task A_request_through_the_gateway_gives_the_workflow_samples_checksum()
    {
        var random = Seeds.Create(TestContext);
        int seed = random.Next(0, 1 << 30);
        int request = random.Next(0, 1000);
        const int FanOut = 2;
        await using var platform = await FunctionHostHarness.StartWorkflowAsync(FanOut);
        var frames = TrafficFlow.Frames(seed, request);

        var answer = await platform.SendAsync(frames);

        ulong workflow = await ThroughWorkflowSampleAsync(platform.Node!, frames, FanOut);
        Assert.AreEqual(Hex(workflow), answer.Checksum, "the gateway's checksum is the workflow sample's (its stages in one process, in-process clients)");
        Assert.AreEqual(Hex(TrafficFlow.Expected(frames, FanOut)), answer.Checksum, "and the reference computed on the CPU");
        Assert.IsTrue(answer.ComputeMs > 0 && answer.TotalMs >= answer.ComputeMs, $"times: total {answer.TotalMs} ms, compute {answer.ComputeMs} ms");

        var second = await platform.SendAsync(TrafficFlow.Frames(seed, request + 1));
        Assert.AreEqual(Hex(TrafficFlow.Expected(TrafficFlow.Frames(seed, request + 1), FanOut)), second.Checksum, "a second request through the same functions");
    }

    [TestMethod]
    public async Task The_gateway_passes_a_functions_failure_on_with_its_code_and_refuses_frames_without_a_length()
    {
        var random = Seeds.Create(TestContext);
        await using var platform = await FunctionHostHarness.StartWorkflowAsync(fanOut: 1, functionSocket: FunctionHostHarness.NewSocket()); // the functions find no node

        using (var frames = new ByteArrayContent(random.Bytes(1 << 20)))
        {
            var (status, text) = await platform.PostToGatewayAsync(frames);
            Assert.AreEqual(HttpStatusCode.ServiceUnavailable, status, text);
            using var problem = JsonDocument.Parse(text);
            Assert.AreEqual(nameof(FaaSTubeErrorCode.NodeUnavailable), problem.RootElement.GetProperty("code").GetString(), text);
            StringAssert.StartsWith(problem.RootElement.GetProperty("detail").GetString(), "preprocess: answered 503 NodeUnavailable", StringComparison.Ordinal);
            AssertNoStackTrace(text);
        }

        using (var unsized = new StreamContent(new NoLengthStream(random.Bytes(1024))))
        {
            var (status, text) = await platform.PostToGatewayAsync(unsized); // chunked: no Content-Length
            Assert.AreEqual(HttpStatusCode.LengthRequired, status, text);
            StringAssert.Contains(text, ErrorCodes.BadLength, StringComparison.Ordinal);
        }
    }

    [TestMethod]
    public async Task A_malformed_id_gets_400_with_a_code_and_no_stack_trace()
    {
        await using var node = await FunctionHostHarness.StartNodeAsync();
        await using var harness = FunctionHostHarness.WithoutNode();
        var function = await harness.StartFunctionAsync(Stage.Detect, node.SocketPath!);

        foreach (var (body, says) in new[]
        {
            ("""{"input":"not-an-id","salt":1,"consumers":1}""", "'not-an-id' is not a tube id"),
            ($$"""{"input":"{{new string('z', 32)}}","salt":1,"consumers":1}""", "is not a tube id"),
            ("""{"salt":1,"consumers":1}""", "input: missing"),
            ($$"""{"input":"{{TubeId.NewId()}}","salt":1,"consumers":0}""", "consumers: 0 is not from 1 to 64"),
        })
        {
            var (status, problem, text) = await PostAsync(harness.Http, function, body);
            Assert.AreEqual(HttpStatusCode.BadRequest, status, text);
            Assert.AreEqual(ErrorCodes.BadRequest, problem.GetProperty("code").GetString(), text);
            StringAssert.Contains(problem.GetProperty("detail").GetString(), says, StringComparison.Ordinal);
            AssertNoStackTrace(text);
        }

        var (jsonStatus, _, jsonText) = await PostAsync(harness.Http, function, "{ not json");
        Assert.AreEqual(HttpStatusCode.BadRequest, jsonStatus, "a body that is not JSON: the framework's 400");
        AssertNoStackTrace(jsonText);
    }

    [TestMethod]
    public async Task A_function_whose_node_is_down_answers_503_NodeUnavailable()
    {
        await using var harness = FunctionHostHarness.WithoutNode();
        var function = await harness.StartFunctionAsync(Stage.Classify, FunctionHostHarness.NewSocket()); // nothing listens there

        for (int attempt = 0; attempt < 2; attempt++) // and again: the provider tries anew, fails the same way
        {
            var (status, problem, text) = await PostAsync(harness.Http, function, Request(TubeId.NewId()));
            Assert.AreEqual(HttpStatusCode.ServiceUnavailable, status, text);
            Assert.AreEqual(nameof(FaaSTubeErrorCode.NodeUnavailable), problem.GetProperty("code").GetString(), text);
            Assert.IsFalse(string.IsNullOrWhiteSpace(problem.GetProperty("detail").GetString()), text);
            AssertNoStackTrace(text);
        }
    }

    [TestMethod]
    public async Task A_function_answers_503_while_its_node_is_gone_and_serves_again_when_it_is_back()
    {
        var random = Seeds.Create(TestContext);
        string socket = FunctionHostHarness.NewSocket();
        await using var harness = FunctionHostHarness.WithoutNode();
        var function = await harness.StartFunctionAsync(Stage.Classify, socket);

        var node = await FunctionHostHarness.StartNodeAsync(socket);
        string output = await InvokeOnceAsync(harness.Http, function, node, random);
        await node.DisposeAsync(); // the node goes away (its socket with it)

        var (status, problem, text) = await PostAsync(harness.Http, function, Request(TubeId.Parse(output)));
        Assert.AreEqual(HttpStatusCode.ServiceUnavailable, status, text);
        Assert.AreEqual(nameof(FaaSTubeErrorCode.NodeUnavailable), problem.GetProperty("code").GetString(), text);
        AssertNoStackTrace(text);

        await using var again = await FunctionHostHarness.StartNodeAsync(socket);
        await InvokeOnceAsync(harness.Http, function, again, random); // a new client, and a new worker on its GPUs
    }

    /// <summary>Puts random input (as the detect stage's output would be) and invokes the function on it: 200 with an output id whose bytes are the stage's.</summary>
    private static async Task<string> InvokeOnceAsync(HttpClient http, Uri function, TubeNode node, Random random)
    {
        await using var client = await TubeClient.ConnectInProcessAsync(node, new TubeClientOptions
        {
            SocketPath = node.SocketPath!,
            Workflow = "traffic",
            Function = "gateway",
            WindowBytes = 8 << 20,
            Gpus = new GpuSystemOptions { Backend = GpuBackend.Simulated },
        });
        var input = random.Bytes(Stage.Detect.OutputBytes);
        var id = await client.PutAsync(input);
        var (status, _, text) = await PostAsync(http, function, Request(id));
        Assert.AreEqual(HttpStatusCode.OK, status, text);
        var answer = JsonSerializer.Deserialize(text, HostJson.Default.FunctionResponse)!;
        var output = new byte[Stage.Classify.OutputBytes];
        await client.GetAsync(TubeId.Parse(answer.Output), output);
        var expected = new byte[Stage.Classify.OutputBytes];
        Stage.Compute(input, expected, salt: 3);
        CollectionAssert.AreEqual(expected, output, "the function's output is the classify stage's work on its input");
        return answer.Output;
    }

    private static string Request(TubeId input) => JsonSerializer.Serialize(new FunctionRequest(input.ToString(), 3, 1), HostJson.Default.FunctionRequest);

    /// <summary>The workflow sample's path through FaaSTube: its stage workers and flow, in one process (its --in-process mode), on the same node.</summary>
    private static async Task<ulong> ThroughWorkflowSampleAsync(TubeNode node, byte[] frames, int fanOut)
    {
        TubeClientOptions Options(string function) => new()
        {
            SocketPath = node.SocketPath!,
            Workflow = "traffic",
            Function = function,
            WindowBytes = 8 << 20,
            Gpus = new GpuSystemOptions { Backend = GpuBackend.Simulated },
        };
        var clients = new List<TubeClient>();
        var workers = new List<StageWorker>();
        try
        {
            async Task<StageWorker> Worker(Stage stage)
            {
                var client = await TubeClient.ConnectInProcessAsync(node, Options(stage.Name));
                clients.Add(client);
                var worker = new StageWorker(client, stage);
                workers.Add(worker);
                return worker;
            }

            var gateway = await TubeClient.ConnectInProcessAsync(node, Options("gateway"));
            clients.Add(gateway);
            var pre = await Worker(Stage.Preprocess);
            var det = await Worker(Stage.Detect);
            var classifiers = new List<StageWorker>();
            for (int k = 0; k < fanOut; k++)
            {
                classifiers.Add(await Worker(Stage.Classify));
            }

            var input = await gateway.PutAsync(frames);
            var flow = await TrafficFlow.RunStagesAsync(input.ToString(), fanOut, (stage, k, call) =>
                (stage == Stage.Preprocess ? pre : stage == Stage.Detect ? det : classifiers[k]).RunAsync(Mode.Tube, call));
            var (checksum, _) = await TrafficFlow.CollectAsync(flow.Classifiers, async output =>
            {
                var bytes = new byte[Stage.Classify.OutputBytes];
                await gateway.GetAsync(TubeId.Parse(output), bytes);
                return bytes;
            });
            return checksum;
        }
        finally
        {
            workers.ForEach(w => w.Dispose());
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    private static async Task<(HttpStatusCode Status, JsonElement Problem, string Text)> PostAsync(HttpClient http, Uri function, string json)
    {
        using var content = new StringContent(json, Encoding.UTF8, "application/json");
        using var response = await http.PostAsync(function, content);
        string text = await response.Content.ReadAsStringAsync();
        var problem = text.Length > 0 && response.Content.Headers.ContentType?.MediaType == "application/problem+json"
            ? JsonDocument.Parse(text).RootElement.Clone()
            : default;
        return (response.StatusCode, problem, text);
    }

    private static void AssertNoStackTrace(string text)
    {
        Assert.IsFalse(text.Contains("   at ", StringComparison.Ordinal), $"no stack trace in the answer: {text}");
        Assert.IsFalse(text.Contains("Exception", StringComparison.Ordinal), $"no exception type in the answer: {text}");
    }

    private static string Hex(ulong value) => value.ToString("x16", CultureInfo.InvariantCulture);

    /// <summary>A stream that does not tell its length, so that HttpClient sends it chunked.</summary>
    private sealed class NoLengthStream(byte[] bytes) : MemoryStream(bytes)
    {
        public override bool CanSeek => false;
    }
}
