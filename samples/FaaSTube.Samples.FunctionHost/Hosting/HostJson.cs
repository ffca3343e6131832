using System.Text.Json;
using System.Text.Json.Serialization;
using FaaSTube.Samples.FunctionHost.Functions;
using FaaSTube.Samples.FunctionHost.Gateway;

namespace FaaSTube.Samples.FunctionHost.Hosting;

/// <summary>The JSON the hosts read and write, source-generated (web defaults: camelCase names).</summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(FunctionRequest))]
[JsonSerializable(typeof(FunctionResponse))]
[JsonSerializable(typeof(FunctionProblem))]
[JsonSerializable(typeof(TrafficResponse))]
internal sealed partial class HostJson : JsonSerializerContext;
