using BenchmarkDotNet.Running;
using FaaSTube.Bench;

var (config, rest) = BenchConfig.Create(args);
BenchmarkSwitcher.FromAssembly(typeof(BenchConfig).Assembly).Run(rest, config);
