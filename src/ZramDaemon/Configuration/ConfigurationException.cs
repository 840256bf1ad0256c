namespace ZramDaemon.Configuration;

/// <summary>
/// A configuration that cannot be used. <see cref="Exception.Message"/> is the one line the user sees: where
/// the value came from (file:line [section] key, environment variable or option), the value, and why.
/// </summary>
public sealed class ConfigurationException : Exception
{
    public ConfigurationException()
    {
    }

    public ConfigurationException(string message)
        : base(message)
    {
    }

    public ConfigurationException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>True when the bad value came from the command line: that is a usage error (exit 64), the
    /// others are configuration errors (exit 78).</summary>
    public bool FromCommandLine { get; init; }

    public int ExitCode => FromCommandLine ? ExitCodes.Usage : ExitCodes.Configuration;
}
