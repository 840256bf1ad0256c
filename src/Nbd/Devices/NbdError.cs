namespace Nbd.Devices;

/// <summary>The error values NBD puts on the wire (doc/proto.md "Error values"); they are Linux errno numbers.</summary>
public enum NbdError : uint
{
    None = 0,
    NotPermitted = 1,    // EPERM
    IO = 5,              // EIO
    NoMemory = 12,       // ENOMEM
    Invalid = 22,        // EINVAL
    NoSpace = 28,        // ENOSPC
    Overflow = 75,       // EOVERFLOW
    NotSupported = 95,   // ENOTSUP
    Shutdown = 108,      // ESHUTDOWN
}
