using Serilog.Events;

namespace ZramDaemon.Configuration;

/// <summary>log-level's words (and ZRAMD_LOG_LEVEL's): one table for the loader, which reads them, and the startup
/// report, which prints a level back as the first word listed for it.</summary>
internal static class LogLevelNames
{
    private static readonly (string Name, LogEventLevel Level)[] Names =
    [
        ("debug", LogEventLevel.Debug),
        ("info", LogEventLevel.Information),
        ("information", LogEventLevel.Information),
        ("warning", LogEventLevel.Warning),
        ("warn", LogEventLevel.Warning),
        ("error", LogEventLevel.Error),
    ];

    /// <summary>What the loader says when a word is none of these.</summary>
    public const string Expected = "use debug, info, warning or error";

    public static bool TryParse(string word, out LogEventLevel level)
    {
        foreach ((string name, LogEventLevel value) in Names)
        {
            if (string.Equals(name, word, StringComparison.OrdinalIgnoreCase))
            {
                level = value;
                return true;
            }
        }

        level = LogEventLevel.Information;
        return false;
    }

    /// <summary>The word for <paramref name="level"/> (the first listed); "info" for a level no word names.</summary>
    public static string Name(LogEventLevel level)
    {
        foreach ((string name, LogEventLevel value) in Names)
        {
            if (value == level)
            {
                return name;
            }
        }

        return "info";
    }
}
