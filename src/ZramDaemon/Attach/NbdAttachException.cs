using ZramDaemon.Native;
namespace ZramDaemon.Attach;

/// <summary>Binding an export to /dev/nbdX failed; the message says what to do. <see cref="Errno"/> is the
/// system error when there was one (0 otherwise).</summary>
public sealed class NbdAttachException : Exception
{
    public NbdAttachException()
    {
    }

    public NbdAttachException(string message)
        : base(message)
    {
    }

    public NbdAttachException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public NbdAttachException(string message, int errno)
        : base($"{message}: {Interop.Libc.Describe(errno)}")
    {
        Errno = errno;
    }

    public int Errno { get; }
}
