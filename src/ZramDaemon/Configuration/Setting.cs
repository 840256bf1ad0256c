namespace ZramDaemon.Configuration;

/// <summary>A raw configuration value and where it came from, so that a bad one can be reported in one line.</summary>
/// <param name="Value">The text as given.</param>
/// <param name="Origin">"FILE:LINE [section] key", "environment variable NAME" or "option --name".</param>
/// <param name="FromCommandLine">Errors in it are usage errors (exit 64) rather than configuration errors (78).</param>
internal sealed record Setting(string Value, string Origin, bool FromCommandLine)
{
    /// <summary>A size with a K/M/G/T suffix rather than a zram-generator expression of ram.</summary>
    public bool IsPlainSize { get; init; }

    public ConfigurationException Fail(string why) =>
        new($"{Logging.PrintableText.Of(Origin)} = '{Logging.PrintableText.Of(Value)}': {why}") { FromCommandLine = FromCommandLine };
}
