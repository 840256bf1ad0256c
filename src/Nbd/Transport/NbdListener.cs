using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Nbd.Native;

namespace Nbd;

/// <summary>
/// A listening socket the server accepts NBD clients on: a Unix stream socket (file created with a given mode
/// and group), a TCP socket (TCP_NODELAY on every accepted connection), or sockets systemd passed in.
/// </summary>
public sealed class NbdListener : IDisposable
{
    private const int Backlog = 512;
    private const int FirstSystemdFd = 3;

    private readonly Socket _socket;
    private readonly SocketAcceptor _acceptor;
    private readonly UnixSocketFile? _socketFile;

    private NbdListener(Socket socket, string description, UnixSocketFile? socketFile)
    {
        _socket = socket;
        Description = description;
        _socketFile = socketFile;
        _acceptor = new SocketAcceptor(socket, noDelay: IsTcp);
    }

    /// <summary>"unix:/run/zramd/zramd.sock", "tcp:127.0.0.1:10809".</summary>
    public string Description { get; }

    internal System.Net.EndPoint? LocalEndPoint => _socket.LocalEndPoint;

    /// <summary>The address a TCP listener is bound to (also for sockets systemd passed in); null for Unix sockets.</summary>
    public IPEndPoint? TcpEndPoint => IsTcp ? _socket.LocalEndPoint as IPEndPoint : null;

    internal bool IsTcp => _socket.AddressFamily is AddressFamily.InterNetwork or AddressFamily.InterNetworkV6;

    /// <summary>Binds a Unix stream socket at <paramref name="path"/>. A stale socket file (nobody accepting on it)
    /// is removed first; a live one, or a file that is not a socket, is an error. The file gets <paramref name="mode"/> and, if given, the group:
    /// a number, which the caller looked up (a name looked up here too could resolve differently).</summary>
    public static NbdListener BindUnix(string path, int mode = 0x1B0 /* 0660 */, uint? groupId = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);

        // (gid_t)-1 is chown's "no change": the socket would silently keep our group.
        if (groupId == Libc.NoChange)
        {
            throw new ArgumentOutOfRangeException(nameof(groupId), groupId, "(gid_t)-1 is chown's \"no change\", not a group");
        }

        UnixSocketFile.RemoveStale(path);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        UnixSocketFile? file = null;
        try
        {
            file = UnixSocketFile.Bind(socket, path);
            if (Libc.Chmod(path, (uint)mode) != 0)
            {
                throw new IOException($"chmod {Convert.ToString(mode, 8)} {path}: {Marshal.GetLastPInvokeErrorMessage()}");
            }

            if (groupId is { } gid && Libc.Chown(path, Libc.NoChange, gid) != 0)
            {
                throw new IOException($"chown :{gid} {path}: {Marshal.GetLastPInvokeErrorMessage()}");
            }

            socket.Listen(Backlog);
            return new NbdListener(socket, "unix:" + path, file);
        }
        catch
        {
            socket.Dispose();
            file?.Delete();
            throw;
        }
    }

    public static NbdListener BindTcp(IPEndPoint endPoint)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(endPoint);
            socket.Listen(Backlog);
            return new NbdListener(socket, "tcp:" + socket.LocalEndPoint, null);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>The listening sockets systemd passed (LISTEN_PID/LISTEN_FDS, fds from 3); empty when this process
    /// was not socket-activated. The variables are removed so that children do not inherit them. Throws
    /// <see cref="IOException"/> if a descriptor is not a listening stream socket.</summary>
    public static IReadOnlyList<NbdListener> FromSystemd()
    {
        string? pid = Environment.GetEnvironmentVariable("LISTEN_PID");
        string? fds = Environment.GetEnvironmentVariable("LISTEN_FDS");
        if (pid is null || fds is null
            || !int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out int listenPid) || listenPid != Environment.ProcessId
            || !int.TryParse(fds, NumberStyles.None, CultureInfo.InvariantCulture, out int count) || count <= 0)
        {
            return [];
        }

        string[] names = (Environment.GetEnvironmentVariable("LISTEN_FDNAMES") ?? string.Empty).Split(':');
        Environment.SetEnvironmentVariable("LISTEN_PID", null);
        Environment.SetEnvironmentVariable("LISTEN_FDS", null);
        Environment.SetEnvironmentVariable("LISTEN_FDNAMES", null);
        return FromInheritedDescriptors(FirstSystemdFd, count, names);
    }

    /// <summary>Takes ownership of <paramref name="count"/> listening sockets at consecutive descriptors. Throws
    /// <see cref="IOException"/> naming the first descriptor that is not a listening stream socket, before any is
    /// taken: accepting on anything else fails only later, inside the accept loop, while the daemon says it serves;
    /// and a descriptor past those really passed (a wrong LISTEN_FDS) is one of the runtime's own, never to be
    /// closed.</summary>
    internal static IReadOnlyList<NbdListener> FromInheritedDescriptors(int firstFd, int count, string[] names)
    {
        for (int i = 0; i < count; i++)
        {
            if (WhyNotPassed(firstFd + i) is { } notPassed)
            {
                // Past the descriptors really passed, the next ones are the runtime's own: the fault is LISTEN_FDS's.
                string named = count == 1 ? $"fd {firstFd}" : $"fds {firstFd} to {firstFd + count - 1}";
                throw new IOException($"LISTEN_FDS={count} names {named}, but fd {firstFd + i} {notPassed}");
            }

            if (WhyNotListening(firstFd + i) is { } why)
            {
                throw new IOException($"fd {firstFd + i}{SystemdName(names, i)} {why}");
            }
        }

        var listeners = new List<NbdListener>(count);
        for (int i = 0; i < count; i++)
        {
            var socket = new Socket(new SafeSocketHandle(firstFd + i, ownsHandle: true));
            string where = socket.LocalEndPoint switch
            {
                UnixDomainSocketEndPoint unix => "unix:" + unix,
                IPEndPoint ip => "tcp:" + ip,
                var other => "fd:" + (firstFd + i) + ":" + other,
            };
            listeners.Add(new NbdListener(socket, where + SystemdName(names, i), null));
        }

        return listeners;
    }

    private static string SystemdName(string[] names, int i) => i < names.Length && names[i].Length > 0 ? " (systemd " + names[i] + ")" : " (systemd)";

    /// <summary>Null for a descriptor this process inherited across exec; else why <paramref name="fd"/> cannot be one
    /// systemd passed. systemd clears FD_CLOEXEC on what it passes (or exec would close it), and the runtime opens
    /// every descriptor of its own close-on-exec; so a close-on-exec descriptor was opened here, after exec.</summary>
    private static string? WhyNotPassed(int fd)
    {
        int flags = Libc.Fcntl(fd, Libc.FGetFd, 0);
        if (flags == -1 && Marshal.GetLastPInvokeError() == Libc.Ebadf)
        {
            return "is not open: LISTEN_FDS counts more descriptors than were passed";
        }

        return flags != -1 && (flags & Libc.FdCloexec) != 0
            ? "was not passed: it is close-on-exec, so one of zramd's own (the runtime opened it); LISTEN_FDS counts more descriptors than were passed"
            : null;
    }

    /// <summary>Null for a listening stream socket; else what <paramref name="fd"/> is, and what a unit needs.</summary>
    private static string? WhyNotListening(int fd)
    {
        uint length = sizeof(int);
        if (Libc.GetSockOpt(fd, Libc.SolSocket, Libc.SoType, out int type, ref length) != 0)
        {
            return Marshal.GetLastPInvokeError() switch
            {
                Libc.Ebadf => "is not open: LISTEN_FDS counts more descriptors than were passed",
                Libc.Enotsock => "is not a socket: zramd needs a listening stream socket (ListenStream=)",
                _ => "cannot be inspected: " + Marshal.GetLastPInvokeErrorMessage(),
            };
        }

        if (type != Libc.SockStream)
        {
            string kind = type switch
            {
                Libc.SockDgram => "a datagram socket (ListenDatagram=)",
                Libc.SockSeqPacket => "a sequential-packet socket (ListenSequentialPacket=)",
                _ => $"a socket of type {type}",
            };
            return $"is {kind}: zramd needs a listening stream socket (ListenStream=)";
        }

        length = sizeof(int);
        if (Libc.GetSockOpt(fd, Libc.SolSocket, Libc.SoAcceptConn, out int listening, ref length) != 0 || listening == 0)
        {
            return "is a stream socket that is not listening (a connection, as Accept=yes passes): zramd needs Accept=no";
        }

        return null;
    }

    /// <summary>Waits for the next client (TCP_NODELAY set on TCP); null once <paramref name="cancellationToken"/> is
    /// cancelled or the listener disposed. Throws <see cref="IOException"/> when accept(2) fails for want of descriptors
    /// or memory (see <see cref="SocketAcceptor"/>).</summary>
    internal Socket? Accept(CancellationToken cancellationToken) => _acceptor.Accept(cancellationToken);

    public void Dispose()
    {
        // The accept in progress ends first: its descriptor must not be closed under it.
        _acceptor.Dispose();

        // While the socket still holds the file's inode: once closed, a file bound at the path since could get the
        // same inode number (ext4 reuses it at once) and pass for ours.
        _socketFile?.Delete();
        _socket.Dispose();
    }

    public override string ToString() => Description;
}
