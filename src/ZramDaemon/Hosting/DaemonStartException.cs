namespace ZramDaemon.Hosting;

/// <summary>The daemon could not start (a socket cannot be bound, a device cannot be created); the message
/// says what and what to do. Exit code 1.</summary>
public sealed class DaemonStartException : Exception
{
    public DaemonStartException()
    {
    }

    public DaemonStartException(string message)
        : base(message)
    {
    }

    public DaemonStartException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
