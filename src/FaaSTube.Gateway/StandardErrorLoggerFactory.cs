using Microsoft.Extensions.Logging;

namespace FaaSTube.Gateway;

/// <summary>
/// The gateway's log: one line per entry on standard error (standard output carries only the
/// gateway's answer to the node). Written against Microsoft.Extensions.Logging.Abstractions alone, so
/// the program needs no assembly beyond those FaaSTube itself depends on: it runs from a consuming
/// application's output folder, where only FaaSTube's dependencies are sure to be (docs/architecture.md,
/// "The package").
/// </summary>
internal sealed class StandardErrorLoggerFactory(TextWriter error, LogLevel minimum) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => new Logger(error, minimum, categoryName);

    /// <summary>Other providers are not supported: the gateway logs to standard error only.</summary>
    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException("The gateway logs to standard error only.");

    public void Dispose() => error.Flush();

    private sealed class Logger(TextWriter error, LogLevel minimum, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None && logLevel >= minimum;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            string message = formatter(state, exception);
            if (exception is not null)
            {
                message = $"{message} ({exception})"; // the whole exception, on the same line below
            }

            // One line per entry (TextWriter.Synchronized: whole lines from concurrent sessions).
            error.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {Level(logLevel)} {category}[{eventId.Id}] {message.ReplaceLineEndings(" ")}");
        }

        private static string Level(LogLevel level) => level switch
        {
            LogLevel.Trace => "trce",
            LogLevel.Debug => "dbug",
            LogLevel.Information => "info",
            LogLevel.Warning => "warn",
            LogLevel.Error => "fail",
            _ => "crit",
        };
    }
}
