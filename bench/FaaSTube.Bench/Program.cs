using BenchmarkDotNet.Running;
using FaaSTube.Bench;
using FaaSTube.Bench.Memory;

switch (args.FirstOrDefault())
{
    case "pool-trace":
        return await PoolTrace.RunAsync(args[1..]);
    case "channel-handoff":
        return await FaaSTube.Bench.Channels.HandoffScenario.RunAsync(args[1..]);
    case "put-host":
        return await FaaSTube.Bench.Channels.PutHostScenario.RunAsync(args[1..]);
    case "node-soak":
        return await FaaSTube.Bench.Channels.NodeSoakScenario.RunAsync(args[1..]);
    case "handoff-consumer":
        return await FaaSTube.Bench.Channels.HandoffScenario.ConsumerMainAsync(args[1..]);
    case "control-floor":
        return await FaaSTube.Bench.Channels.ControlFloorScenario.RunAsync(args[1..]);
    case "control-floor-peer":
        return await FaaSTube.Bench.Channels.ControlFloorScenario.PeerMainAsync(args[1..]);
    case "channel-latency":
        return await FaaSTube.Bench.Channels.ChannelLatencyScenario.RunAsync(args[1..]);
    case "channel-latency-peer":
        return await FaaSTube.Bench.Channels.ChannelLatencyScenario.PeerMainAsync(args[1..]);
    case "routing-matrix":
        return await FaaSTube.Bench.Routing.BandwidthMatrixScenario.RunAsync(args[1..]);
    case "completion-cpu":
        return await FaaSTube.Bench.Devices.CompletionCpuScenario.RunAsync(args[1..]);
    case "model-cache":
        return await FaaSTube.Bench.Cache.ModelCacheScenario.RunAsync(args[1..]);
    case "remote-baseline":
        return await FaaSTube.Bench.Remote.RemoteBaselineScenario.RunAsync(args[1..]);
    case "remote-baseline-peer":
        return await FaaSTube.Bench.Remote.RemoteBaselineScenario.PeerMainAsync(args[1..]);
    case "transfer-isolation":
        return await FaaSTube.Bench.Transfers.IsolationScenario.RunAsync(args[1..]);
}

var (config, rest) = BenchConfig.Create(args);
BenchmarkSwitcher.FromAssembly(typeof(BenchConfig).Assembly).Run(rest, config);
return 0;
