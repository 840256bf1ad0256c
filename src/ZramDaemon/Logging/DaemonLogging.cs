using Serilog;
using Serilog.Core;
using Serilog.Events;

namespace ZramDaemon.Logging;

/// <summary>
/// Serilog for the daemon, to standard error. Under journald ($JOURNAL_STREAM set: systemd connected our
/// output to the journal) each line starts with a syslog priority like &lt;6&gt; and has no timestamp, since
/// the journal adds its own and reads the prefix as the entry's level (sd-daemon(3)). On a terminal: a
/// timestamp and a three-letter level.
/// </summary>
public static class DaemonLogging
{
    private const string JournalTemplate = "{SyslogPriority:l}{Message:lj}{NewLine}{Exception}";
    private const string TerminalTemplate = "{Timestamp:HH:mm:ss.fff} {Level:u3} {Message:lj}{NewLine}{Exception}";

    /// <param name="level">The minimum level, which a reload may change while the logger runs (log-level).</param>
    public static Logger Create(LoggingLevelSwitch level, IReadOnlyDictionary<string, string> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        bool journal = UnderJournal(environment);
        return new LoggerConfiguration()
            .MinimumLevel.ControlledBy(level)
            .MinimumLevel.Override("Microsoft", LogEventLevel.Warning)

            // The host logs a failed start with a stack trace; zramd says it once, plainly (DaemonRunner).
            .MinimumLevel.Override("Microsoft.Extensions.Hosting", LogEventLevel.Fatal)
            .Enrich.With<SyslogPriorityEnricher>()
            .WriteTo.Console(
                outputTemplate: journal ? JournalTemplate : TerminalTemplate,
                standardErrorFromLevel: LogEventLevel.Verbose,
                formatProvider: System.Globalization.CultureInfo.InvariantCulture)
            .CreateLogger();
    }

    /// <summary>Whether standard error goes to journald ($JOURNAL_STREAM set), which reads a &lt;N&gt; prefix as the level.</summary>
    public static bool UnderJournal(IReadOnlyDictionary<string, string> environment)
        => environment.TryGetValue("JOURNAL_STREAM", out string? stream) && stream.Length > 0;

    /// <summary>
    /// A line written before (or without) the logger, the configuration error's: under journald with the error
    /// priority, as the logger's own errors, so that <c>journalctl -p err</c> shows what to fix.
    /// </summary>
    public static void WriteError(string line, IReadOnlyDictionary<string, string> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        Console.Error.WriteLine((UnderJournal(environment) ? SyslogPrefix(LogEventLevel.Error) : string.Empty) + PrintableText.Of(line));
    }

    /// <summary>sd-daemon.h's SD_ERR .. SD_DEBUG prefixes, by Serilog level.</summary>
    public static string SyslogPrefix(LogEventLevel level) => level switch
    {
        LogEventLevel.Fatal => "<2>",
        LogEventLevel.Error => "<3>",
        LogEventLevel.Warning => "<4>",
        LogEventLevel.Information => "<6>",
        _ => "<7>",
    };

    private sealed class SyslogPriorityEnricher : ILogEventEnricher
    {
        private static readonly LogEventProperty[] Properties = Enum.GetValues<LogEventLevel>()
            .Select(l => new LogEventProperty("SyslogPriority", new ScalarValue(SyslogPrefix(l))))
            .ToArray();

        public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory) =>
            logEvent.AddPropertyIfAbsent(Properties[(int)logEvent.Level]);
    }
}
