using System.Globalization;
using Microsoft.Extensions.Logging;
using ZramDaemon.Configuration;

namespace ZramDaemon.Hosting;

/// <summary>Logs the configuration in effect at start, so that the journal says what the daemon ran with; a reload
/// compares two configurations by what it logs (<see cref="Settings"/>), so that both name each setting alike.</summary>
internal static partial class ConfigurationReport
{
    /// <summary>The settings <see cref="Log"/> names, as key and value in its words ("[zram0] zram-size" for a
    /// device's), in its order; not the first line, which names the file read and the RAM, not settings. Taken from
    /// each message's template, split where it separates settings, with the values put in after: a value may hold
    /// ", " or " = " itself (a path may hold anything), which splitting the logged text would take for a setting.</summary>
    public static IReadOnlyList<KeyValuePair<string, string>> Settings(ZramdConfiguration config)
    {
        var lines = new LineCollector();
        Log(lines, config);
        var settings = new List<KeyValuePair<string, string>>();
        foreach ((string template, IReadOnlyDictionary<string, string> values) in lines.Messages.Skip(1))
        {
            // "[{Name}] key = {Value}, key = {Value}%" or "key = {Value}, ...".
            const string DevicePrefix = "[{Name}] ";
            string prefix = template.StartsWith(DevicePrefix, StringComparison.Ordinal) ? "[" + values["Name"] + "] " : string.Empty;
            foreach (string part in template[(prefix.Length == 0 ? 0 : DevicePrefix.Length)..].Split(", "))
            {
                int equals = part.IndexOf(" = ", StringComparison.Ordinal);
                settings.Add(new(prefix + part[..equals], Fill(part[(equals + 3)..], values)));
            }
        }

        return settings;
    }

    /// <summary>A template's part with each {Placeholder} replaced by its value (a {Name:format} or {Name,width} by the
    /// value of Name, as the state holds it).</summary>
    private static string Fill(string template, IReadOnlyDictionary<string, string> values)
    {
        var text = new System.Text.StringBuilder();
        int at = 0;
        for (int open = template.IndexOf('{', StringComparison.Ordinal); open >= 0; open = template.IndexOf('{', at))
        {
            int close = template.IndexOf('}', open);
            string name = template[(open + 1)..close].Split(':', ',')[0];
            text.Append(template, at, open - at).Append(values[name]);
            at = close + 1;
        }

        return text.Append(template, at, template.Length - at).ToString();
    }

    public static void Log(ILogger logger, ZramdConfiguration config)
    {
        LogSource(logger, config.ConfigPath ?? "none (embedded default)", config.RamMiB is { } ram ? ram.ToString("0", CultureInfo.InvariantCulture) + " MiB" : "unknown (/proc/meminfo cannot be read)");
        LogDaemon(
            logger,
            string.Join(' ', config.Listen),
            "0" + Convert.ToString(config.SocketMode, 8),
            config.SocketGroup ?? "(ours)",
            config.ControlPath,
            config.TlsMode.ToString().ToLowerInvariant(),
            config.TlsClientCaPath ?? "none",
            config.LockMemory ? "yes" : "no",
            LogLevelNames.Name(config.LogLevel));
        LogLimits(logger, config.MaxConnections, config.MaxInFlightPerConnection, config.ThreadsPerConnection, SizeParser.Format(config.MaxPayload), (int)config.HandshakeTimeout.TotalSeconds, config.BusyPollMicroseconds);
        foreach (DeviceConfiguration d in config.Devices)
        {
            LogDevice(
                logger,
                d.Name,
                SizeParser.Format(d.DiskSize),
                d.Algorithm,
                d.MemLimit == 0 ? "none" : SizeParser.Format(d.MemLimit),
                d.CompactWatermarkPercent,
                d.DeferredFreeCapacity?.ToString(CultureInfo.InvariantCulture) ?? "auto",
                d.ReadOnly ? "yes" : "no",
                d.Attach ?? "none");
            if (d.RecompressAlgorithm is not null)
            {
                LogRecompression(logger, d.Name, d.RecompressAlgorithm,
                    d.RecompressIdleAfter == TimeSpan.Zero ? "0 (only on request)" : string.Create(CultureInfo.InvariantCulture, $"{d.RecompressIdleAfter.TotalSeconds:0}s"), d.RecompressCpuPercent,
                    d.RecompressDictionarySize == 0 ? "none" : SizeParser.Format(d.RecompressDictionarySize));
            }

            if (d.Dedup)
            {
                LogDedup(logger, d.Name);
            }

            if (d.WritebackFile is not null)
            {
                LogWriteback(logger, d.Name, d.WritebackFile, d.WritebackWatermarkPercent,
                    d.WritebackLimitPerDay == 0 ? "none" : SizeParser.Format(d.WritebackLimitPerDay) + " per day");
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "configuration file: {Path}; ram = {Ram}")]
    private static partial void LogSource(ILogger logger, string path, string ram);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "listen = {Listen}, socket-mode = {Mode}, socket-group = {Group}, control = {Control}, tls-mode = {Tls}, tls-client-ca = {ClientCa}, lock-memory = {LockMemory}, log-level = {LogLevel}")]
    private static partial void LogDaemon(ILogger logger, string listen, string mode, string group, string control, string tls, string clientCa, string lockMemory, string logLevel);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "max-connections = {Connections}, max-in-flight = {InFlight}, threads-per-connection = {Threads}, max-payload = {Payload}, handshake-timeout = {Timeout}s, busy-poll = {BusyPoll}us")]
    private static partial void LogLimits(ILogger logger, int connections, int inFlight, int threads, string payload, int timeout, int busyPoll);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "[{Name}] zram-size = {Size}, compression-algorithm = {Algorithm}, zram-resident-limit = {Limit}, compact-watermark = {Watermark}%, deferred-free-capacity = {Deferred}, read-only = {ReadOnly}, attach = {Attach}")]
    private static partial void LogDevice(ILogger logger, string name, string size, string algorithm, string limit, int watermark, string deferred, string readOnly, string attach);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "[{Name}] recompress-algorithm = {Algorithm}, recompress-idle-after = {IdleAfter}, recompress-cpu-percent = {CpuPercent}%, recompress-dictionary = {Dictionary}")]
    private static partial void LogRecompression(ILogger logger, string name, string algorithm, string idleAfter, int cpuPercent, string dictionary);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "[{Name}] writeback-file = {File}, writeback-watermark = {Watermark}%, writeback-limit = {Limit}")]
    private static partial void LogWriteback(ILogger logger, string name, string file, int watermark, string limit);

    [LoggerMessage(Level = LogLevel.Information, Message = "[{Name}] dedup = yes")]
    private static partial void LogDedup(ILogger logger, string name);

    /// <summary>Keeps each message logged to it: its template and the values of its placeholders.</summary>
    private sealed class LineCollector : ILogger
    {
        public List<(string Template, IReadOnlyDictionary<string, string> Values)> Messages { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            // [LoggerMessage] states are the placeholders' values by name, and the template as {OriginalFormat}.
            var values = ((IReadOnlyList<KeyValuePair<string, object?>>)state!).ToDictionary(
                p => p.Key, p => Convert.ToString(p.Value, CultureInfo.InvariantCulture) ?? string.Empty, StringComparer.Ordinal);
            Messages.Add((values["{OriginalFormat}"], values));
        }
    }
}
