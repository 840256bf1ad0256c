using Microsoft.Extensions.Logging;

namespace ZramDaemon.Tests.Device.Writeback;

/// <summary>Loggers that call back with the level and event id of each message logged, on the thread that logs it: a test acts at
/// a point of a run the device logs (a writeback's first failed write, event 10) while the run waits for the call.</summary>
internal sealed class CallbackLoggerFactory(Action<LogLevel, int> onEvent) : ILoggerFactory, ILogger
{
    public ILogger CreateLogger(string categoryName) => this;

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        => onEvent(logLevel, eventId.Id);
}
