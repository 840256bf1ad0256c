using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace ZramDaemon.Attach;

/// <summary>
/// The `zramd attach NAME [/dev/nbdX]` and `zramd detach /dev/nbdX` verbs: attach connects to a running
/// daemon's NBD socket, negotiates export NAME and hands the connection to the kernel (what nbd-client does,
/// without it). Through netlink the kernel keeps the connection and the command returns at once; through the
/// ioctl fallback the command stays in the foreground until the device is detached.
/// </summary>
public static class AttachCommand
{
    private const int ExitCodeFailure = 1;
    private const int ExitCodeUsage = 64;

    /// <summary>Where a root daemon listens by default.</summary>
    public const string DefaultServer = "unix:/run/zramd/zramd.sock";

    public const string Usage =
        "usage: zramd attach NAME [/dev/nbdN] [--socket unix:PATH|tcp:HOST:PORT] [--ioctl]\n" +
        "       zramd detach /dev/nbdN";

    /// <summary>Runs `attach ...` or `detach ...` (<paramref name="args"/> starts with the verb).</summary>
    public static int Run(IReadOnlyList<string> args, TextWriter output, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(error);
        var positional = new List<string>();
        string server = DefaultServer;
        NbdAttachMethod? method = null;
        for (int i = 1; i < args.Count; i++)
        {
            switch (args[i])
            {
                case "--socket" when i + 1 < args.Count:
                    server = args[++i];
                    server = server.Contains(':', StringComparison.Ordinal) ? server : "unix:" + server;
                    break;
                case "--ioctl":
                    method = NbdAttachMethod.Ioctl;
                    break;
                case "--netlink":
                    method = NbdAttachMethod.Netlink;
                    break;
                case "-h" or "--help":
                    output.WriteLine(Usage);
                    return 0;
                default:
                    if (args[i].StartsWith('-'))
                    {
                        error.WriteLine($"zramd {args[0]}: unknown option {args[i]}\n{Usage}");
                        return ExitCodeUsage;
                    }

                    positional.Add(args[i]);
                    break;
            }
        }

        return (args.Count > 0 ? args[0] : string.Empty, positional.Count) switch
        {
            ("attach", 1) => Attach(positional[0], null, server, method, output, error),
            ("attach", 2) => Attach(positional[0], positional[1], server, method, output, error),
            ("detach", 1) => Detach(positional[0], error),
            _ => UsageError(error),
        };
    }

    private static int UsageError(TextWriter error)
    {
        error.WriteLine(Usage);
        return ExitCodeUsage;
    }

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
            return ExitCodeFailure;
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
            return ExitCodeFailure;
        }

        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{exportName} attached to {attachment.DevicePath} ({attachment.Export.Size} bytes, {attachment.Method})"));
        output.Flush();
        if (attachment.Method == NbdAttachMethod.Ioctl)
        {
            // NBD_DO_IT lives in this process: stay until someone runs `zramd detach` (or nbd-client -d).
            int errno = attachment.WaitUntilDetached();
            attachment.Dispose();
            return errno == 0 ? 0 : ExitCodeFailure;
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
            return ExitCodeFailure;
        }
    }

    private static Socket Connect(string server)
    {
        if (server.StartsWith("unix:", StringComparison.Ordinal))
        {
            var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                unix.Connect(new UnixDomainSocketEndPoint(server[5..]));
                return unix;
            }
            catch
            {
                unix.Dispose();
                throw;
            }
        }

        if (server.StartsWith("tcp:", StringComparison.Ordinal))
        {
            string hostPort = server[4..];
            int colon = hostPort.LastIndexOf(':');
            string host = colon < 0 ? hostPort : hostPort[..colon].Trim('[', ']');
            int port = colon < 0 ? 10809 : int.Parse(hostPort[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture);
            IPAddress address = host == "localhost" ? IPAddress.Loopback : IPAddress.Parse(host);
            var tcp = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                tcp.Connect(new IPEndPoint(address, port));
                return tcp;
            }
            catch
            {
                tcp.Dispose();
                throw;
            }
        }

        throw new FormatException("use unix:PATH or tcp:HOST:PORT");
    }
}
