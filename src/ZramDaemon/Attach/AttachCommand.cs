using System.Globalization;
using System.Net.Sockets;
using ZramDaemon.Configuration;
using ZramDaemon.Native;
using ZramDaemon.Safety;

namespace ZramDaemon.Attach;

/// <summary>
/// The `zramd attach NAME [/dev/nbdX]` and `zramd detach /dev/nbdX` verbs: attach connects to a running
/// daemon's NBD socket, negotiates export NAME and hands the connection to the kernel (what nbd-client does,
/// without it). Through netlink the kernel keeps the connection and the command returns at once; through the
/// ioctl fallback the command stays in the foreground until the device is detached.
/// </summary>
public static class AttachCommand
{
    /// <param name="server">unix:PATH or tcp:HOST:PORT of the daemon's NBD listener.</param>
    /// <returns>the process exit code.</returns>
    public static int Attach(string exportName, string? device, string server, NbdAttachMethod? method, TextWriter output, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        Socket socket;
        try
        {
            socket = Connect(server);
        }
        catch (Exception e) when (e is SocketException or FormatException)
        {
            error.WriteLine($"zramd attach: cannot connect to {server}: {e.Message} (is zramd running? see --socket)");
            return ExitCodes.Failure;
        }

        KernelNbdAttachment attachment;
        try
        {
            attachment = KernelNbdAttachment.Attach(socket, exportName, device, method);
        }
        catch (NbdAttachException e)
        {
            string hint = e.Errno == Interop.Libc.EPerm ? " (attaching needs root or CAP_SYS_ADMIN)"
                : e.Errno == Interop.Libc.EBusy ? " (the device is in use: pick another /dev/nbdN or detach it first)" : string.Empty;
            error.WriteLine($"zramd attach: {e.Message}{hint}");
            return ExitCodes.Failure;
        }

        if (attachment.Method == NbdAttachMethod.Ioctl)
        {
            // NBD_DO_IT lives in this process: stay until someone runs `zramd detach` (or nbd-client -d). Its death
            // would cut the device (swap included), so, as nbd-client -swap does, it keeps its pages in memory and
            // out of the OOM killer's choice; before it says "attached", which a script waits for before swapon.
            if (MemoryLock.LockAll() is { } notLocked)
            {
                error.WriteLine($"zramd attach: warning: could not lock memory (mlockall: {notLocked}): this process may be swapped out to the device it holds");
            }

            if (OomScore.SetNeverKill() is { } notSet)
            {
                error.WriteLine($"zramd attach: warning: could not set oom_score_adj to -1000 ({notSet}): the OOM killer may kill this process and cut {attachment.DevicePath}");
            }

            error.Flush();
        }

        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{exportName} attached to {attachment.DevicePath} ({attachment.Export.Size} bytes, {attachment.Method})"));
        output.Flush();
        if (attachment.Method == NbdAttachMethod.Ioctl)
        {
            int errno = attachment.WaitUntilDetached();
            attachment.Dispose();
            return errno == 0 ? ExitCodes.Success : ExitCodes.Failure;
        }

        return 0;
    }

    public static int Detach(string device, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(error);
        try
        {
            KernelNbdAttachment.Detach(device);
            return 0;
        }
        catch (NbdAttachException e)
        {
            error.WriteLine($"zramd detach: {e.Message}");
            return ExitCodes.Failure;
        }
    }

    /// <summary>Connects to the daemon's NBD listener; the address has the syntax of --listen.</summary>
    private static Socket Connect(string server)
    {
        if (!ListenAddress.TryParse(server, out ListenAddress? address, out string why))
        {
            throw new FormatException(why);
        }

        Socket socket = address.IsUnix
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(address.EndPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            socket.Connect(address.IsUnix ? new UnixDomainSocketEndPoint(address.UnixPath) : address.EndPoint);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
