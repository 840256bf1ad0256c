using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Nbd.Native;

namespace Nbd;

/// <summary>
/// Accepts connections on a listening socket with accept4(2) itself, never asking for the peer's address. .NET's
/// Socket.Accept and AcceptAsync build the peer's address, and a Unix client bound to one that fills sun_path (a path,
/// or an abstract name, of 107 bytes) makes them throw: AcceptAsync throws on a thread-pool thread when the accept was
/// already pending, as a server's always is, and that ends the process. So any client allowed to connect could stop
/// the daemon, and with it every page it holds.
///
/// One thread at a time waits in <see cref="Accept"/>: poll(2) on the listener and an eventfd, which <see cref="Stop"/>
/// writes. The listener is made non-blocking (poll says a connection is there; another process sharing a passed socket
/// may take it first), and never shut down: a socket systemd passed is also systemd's, and a shut-down listener refuses
/// the connections that should start the next zramd. The owner disposes the listener after this, so that no accept
/// holds its descriptor while it closes.
/// </summary>
public sealed class SocketAcceptor : IDisposable
{
    private readonly Socket _listener;
    private readonly bool _noDelay;
    private readonly SafeFileHandle _wake;
    private readonly Lock _accepting = new();
    private volatile bool _stopped;

    /// <param name="noDelay">Sets TCP_NODELAY on every accepted connection (TCP listeners).</param>
    public SocketAcceptor(Socket listener, bool noDelay)
    {
        ArgumentNullException.ThrowIfNull(listener);
        _listener = listener;
        _noDelay = noDelay;
        int fd = (int)listener.Handle;
        int flags = Libc.Fcntl(fd, Libc.FGetFl, 0);
        if (flags < 0 || Libc.Fcntl(fd, Libc.FSetFl, flags | Libc.ONonBlock) < 0)
        {
            throw new IOException($"fcntl O_NONBLOCK on the listening socket: {Marshal.GetLastPInvokeErrorMessage()}");
        }

        int wake = Libc.EventFd(0, Libc.EfdCloexec | Libc.EfdNonBlock);
        if (wake < 0)
        {
            throw new IOException($"eventfd: {Marshal.GetLastPInvokeErrorMessage()}");
        }

        _wake = new SafeFileHandle(wake, ownsHandle: true);
    }

    /// <summary>
    /// Waits for the next connection and returns it (blocking, close-on-exec). Null once <see cref="Stop"/> was called.
    /// Throws <see cref="IOException"/> for a failure that repeats until something is freed (EMFILE, ENFILE, ENOBUFS,
    /// ENOMEM): the caller backs off (<see cref="AcceptBackOff"/>). A connection that failed before it was accepted
    /// (ECONNABORTED, and the network errors accept(2) says to retry) is skipped.
    /// </summary>
    public Socket? Accept()
    {
        lock (_accepting)
        {
            while (!_stopped)
            {
                int fd = Libc.Accept4(_listener.SafeHandle, 0, 0, Libc.SockCloexec);
                if (fd >= 0)
                {
                    var socket = new Socket(new SafeSocketHandle(fd, ownsHandle: true));
                    if (_noDelay)
                    {
                        socket.NoDelay = true;
                    }

                    return socket;
                }

                int errno = Marshal.GetLastPInvokeError();
                if (errno == Libc.Eagain)
                {
                    WaitForConnection();
                }
                else if (!IsRetriedAtOnce(errno))
                {
                    throw new IOException($"accept: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
                }
            }

            return null;
        }
    }

    /// <summary>EINTR; ECONNABORTED; and the network errors of a connection accept(2) passes on (its NOTES: ENETDOWN,
    /// EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH).</summary>
    private static bool IsRetriedAtOnce(int errno) => errno is Libc.Eintr or 103 or 100 or 71 or 92 or 112 or 64 or 113 or 95 or 101;

    private void WaitForConnection()
    {
        Span<Libc.PollFd> fds = stackalloc Libc.PollFd[2];
        fds[0] = new Libc.PollFd { Fd = (int)_listener.Handle, Events = Libc.PollIn };
        fds[1] = new Libc.PollFd { Fd = (int)_wake.DangerousGetHandle(), Events = Libc.PollIn };
        // Any outcome (a connection, the wake-up, EINTR, an error on the listener) goes back to the loop, which
        // looks at _stopped and tries accept4 again; an error on the listener then comes from accept4.
        Libc.Poll(fds, 2, -1);
    }

    /// <summary>Makes the waiting <see cref="Accept"/> (and every later one) return null.</summary>
    public void Stop()
    {
        _stopped = true;
        try
        {
            Libc.Write(_wake, 1UL, sizeof(ulong));
        }
        catch (ObjectDisposedException)
        {
            // Disposed meanwhile (a cancellation callback racing Dispose): nothing waits any more.
        }
    }

    /// <summary>Stops, and returns once no <see cref="Accept"/> is running: then the listener may be closed.</summary>
    public void Dispose()
    {
        Stop();
        lock (_accepting)
        {
            _wake.Dispose();
        }
    }
}
