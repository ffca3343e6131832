using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace FaaSTube.Tests.Support;

/// <summary>A logger factory that keeps every warning and error a node logs (with its exception), so a test can show why the node answered Internal; or every entry from <paramref name="minimum"/> up, for a test that shows the node's log when it fails.</summary>
internal sealed class CollectingLoggerFactory(LogLevel minimum = LogLevel.Warning) : ILoggerFactory
{
    private readonly LogLevel _minimum = minimum;

    public ConcurrentQueue<string> Entries { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Collector(this);

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }

    /// <summary>Writes what was kept to <paramref name="test"/>'s output when the test did not pass.</summary>
    public void ShowIfFailed(Microsoft.VisualStudio.TestTools.UnitTesting.TestContext test)
    {
        if (test.CurrentTestOutcome != Microsoft.VisualStudio.TestTools.UnitTesting.UnitTestOutcome.Passed)
        {
            test.WriteLine($"the node's log ({Entries.Count} entries):{Environment.NewLine}{string.Join(Environment.NewLine, Entries)}");
        }
    }

    private sealed class Collector(CollectingLoggerFactory owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= owner._minimum;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                owner.Entries.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel}: {formatter(state, exception)}{(exception is null ? "" : Environment.NewLine + exception)}");
            }
        }
    }
}
