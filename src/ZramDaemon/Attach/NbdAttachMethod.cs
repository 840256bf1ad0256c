namespace ZramDaemon.Attach;

/// <summary>How the connection was handed to the kernel.</summary>
public enum NbdAttachMethod
{
    /// <summary>Generic netlink NBD_CMD_CONNECT: the kernel holds the socket, no thread waits.</summary>
    Netlink,

    /// <summary>NBD_SET_SOCK ... NBD_DO_IT: a thread of this process stays in NBD_DO_IT while attached.</summary>
    Ioctl,
}
