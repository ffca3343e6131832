using BenchmarkDotNet.Running;
using FaaSTube.Bench;
using FaaSTube.Bench.Memory;

if (args.Length > 0 && args[0] == "pool-trace")
{
    return await PoolTrace.RunAsync(args[1..]);
}

var (config, rest) = BenchConfig.Create(args);
BenchmarkSwitcher.FromAssembly(typeof(BenchConfig).Assembly).Run(rest, config);
return 0;
