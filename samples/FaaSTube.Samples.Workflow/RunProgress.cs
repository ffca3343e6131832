using Spectre.Console;

namespace FaaSTube.Samples.Workflow;

/// <summary>
/// A progress bar per mode (Spectre.Console) while the requests run, on standard error so that
/// standard output stays the report. Where stderr is not a terminal (CI, a pipe) Spectre draws no
/// live bars and prints plain progress lines instead.
/// </summary>
internal static class RunProgress
{
    public static async Task<Dictionary<Mode, List<RequestResult>>> RunAsync(Coordinator coordinator, int requests)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        return await console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .StartAsync(async context =>
            {
                var warmUp = context.AddTask("warm-up", maxValue: 1);
                var tasks = Modes.All.ToDictionary(m => m, m => context.AddTask(m.Title(), autoStart: false, maxValue: requests));
                return await coordinator.RunAsync(
                    warmedUp: () =>
                    {
                        warmUp.Increment(1);
                        foreach (var task in tasks.Values)
                        {
                            task.StartTask();
                        }
                    },
                    requestDone: mode => tasks[mode].Increment(1));
            });
    }
}
