namespace ZramDaemon.Device.Writeback;

/// <summary>A device's backing file is locked by another open of it: another process (another zramd) writes back
/// to it. Nothing in the file was touched.</summary>
public sealed class BackingFileInUseException : IOException
{
    /// <summary>Why the file cannot be used, for a message that names it its own way.</summary>
    public const string Reason = "in use by another process (another zramd?), which holds its lock";

    public BackingFileInUseException()
    {
    }

    public BackingFileInUseException(string path)
        : base($"{path}: {Reason}")
    {
    }

    public BackingFileInUseException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
