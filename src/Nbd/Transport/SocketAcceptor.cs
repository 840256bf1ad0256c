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
/// A thread waits in <see cref="Accept"/>: poll(2) on the listener, the acceptor's eventfd (written once by
/// <see cref="Stop"/>, never read, so every wait then and later ends) and, for a cancellable call, an eventfd of that
/// call's own (its cancellation writes it), so cancelling one call ends that call only. Several threads may wait on
/// one listener; accept4 is non-blocking, and the one that finds no connection waits again. The listener is made
/// non-blocking and never shut down: a socket systemd passed is also systemd's, and a shut-down listener refuses the
/// connections that should start the next zramd. The owner disposes the listener after this acceptor, whose
/// <see cref="Dispose"/> waits out the calls in progress, so that no accept holds its descriptor while it closes.
/// </summary>
public sealed class SocketAcceptor : IDisposable
{
    private readonly Socket _listener;
    private readonly bool _noDelay;
    private readonly SafeFileHandle _stop;

    // Accept holds it shared, Dispose exclusively: the stop eventfd is closed only once no call polls it.
    private readonly ReaderWriterLockSlim _calls = new();
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

        _stop = NewEventFd();
    }

    /// <summary>
    /// Waits for the next connection and returns it (blocking, close-on-exec). Null once <see cref="Stop"/> was called
    /// or <paramref name="cancellationToken"/> is cancelled. Throws <see cref="IOException"/> for a failure that
    /// repeats until something is freed (EMFILE, ENFILE, ENOBUFS, ENOMEM): the caller backs off
    /// (<see cref="AcceptBackOff"/>). A connection that failed before it was accepted (ECONNABORTED, and the network
    /// errors accept(2) says to retry) is skipped.
    /// </summary>
    public Socket? Accept(CancellationToken cancellationToken = default)
    {
        _calls.EnterReadLock();
        SafeFileHandle? cancelled = null;
        CancellationTokenRegistration registration = default;
        try
        {
            if (_stopped)
            {
                return null;
            }

            while (!_stopped && !cancellationToken.IsCancellationRequested)
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
                    // Only now, when there is something to wait for: with one descriptor free, a connection already
                    // queued is still accepted.
                    if (cancelled is null && cancellationToken.CanBeCanceled)
                    {
                        cancelled = NewEventFd();
                        registration = cancellationToken.UnsafeRegister(static state => Signal((SafeFileHandle)state!), cancelled);
                        continue; // cancelled before the registration: the loop sees it; else accept again, then wait
                    }

                    WaitForConnection(cancelled);
                }
                else if (!IsRetriedAtOnce(errno))
                {
                    throw new IOException($"accept: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
                }
            }

            return null;
        }
        finally
        {
            // Waits for a cancellation callback in progress, so the eventfd it writes is still open.
            registration.Dispose();
            cancelled?.Dispose();
            _calls.ExitReadLock();
        }
    }

    /// <summary>EINTR; ECONNABORTED; and the network errors of a connection accept(2) passes on (its NOTES: ENETDOWN,
    /// EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH).</summary>
    private static bool IsRetriedAtOnce(int errno) => errno is Libc.Eintr or 103 or 100 or 71 or 92 or 112 or 64 or 113 or 95 or 101;

    private void WaitForConnection(SafeFileHandle? cancelled)
    {
        Span<Libc.PollFd> fds = stackalloc Libc.PollFd[3];
        fds[0] = new Libc.PollFd { Fd = (int)_listener.Handle, Events = Libc.PollIn };
        fds[1] = new Libc.PollFd { Fd = (int)_stop.DangerousGetHandle(), Events = Libc.PollIn };
        int count = 2;
        if (cancelled is not null)
        {
            fds[2] = new Libc.PollFd { Fd = (int)cancelled.DangerousGetHandle(), Events = Libc.PollIn };
            count = 3;
        }

        // Any outcome (a connection, a stop, EINTR, an error on the listener) goes back to the loop, which looks at
        // the stop and the token and tries accept4 again; an error on the listener then comes from accept4.
        Libc.Poll(fds, (nuint)count, -1);
    }

    private static SafeFileHandle NewEventFd()
    {
        int fd = Libc.EventFd(0, Libc.EfdCloexec | Libc.EfdNonBlock);
        return fd >= 0 ? new SafeFileHandle(fd, ownsHandle: true) : throw new IOException($"eventfd: {Marshal.GetLastPInvokeErrorMessage()}");
    }

    private static void Signal(SafeFileHandle eventFd)
    {
        try
        {
            Libc.Write(eventFd, 1UL, sizeof(ulong));
        }
        catch (ObjectDisposedException)
        {
            // Closed meanwhile: nothing waits on it any more.
        }
    }

    /// <summary>Makes every waiting <see cref="Accept"/>, and every later one, return null.</summary>
    public void Stop()
    {
        _stopped = true;
        Signal(_stop);
    }

    /// <summary>Stops, and returns once no <see cref="Accept"/> is running: then the listener may be closed.</summary>
    public void Dispose()
    {
        Stop();
        _calls.EnterWriteLock();
        try
        {
            _stop.Dispose();
        }
        finally
        {
            _calls.ExitWriteLock();
        }
    }
}
