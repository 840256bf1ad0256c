using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace ZramDaemon.Systemd;

/// <summary>
/// sd_notify(3) by hand: each state change is one datagram ("READY=1", "STATUS=...", "STOPPING=1",
/// "WATCHDOG=1") to the Unix socket named by $NOTIFY_SOCKET. A name starting with '@' is in the abstract
/// namespace (the '@' stands for the leading NUL byte). Without $NOTIFY_SOCKET (not under systemd, or
/// Type= other than notify) every call does nothing.
/// </summary>
public sealed class SystemdNotifier : IDisposable
{
    private readonly Socket? _socket;
    private readonly UnixDomainSocketEndPoint? _endPoint;
    private readonly Lock _sendLock = new();

    public SystemdNotifier(IReadOnlyDictionary<string, string> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        if (environment.TryGetValue("NOTIFY_SOCKET", out string? path) && path.Length > 1 && path[0] is '/' or '@')
        {
            _endPoint = new UnixDomainSocketEndPoint(path[0] == '@' ? "\0" + path[1..] : path);
            // A datagram socket's receiver queues a few messages (net.unix.max_dgram_qlen, 10) and then blocks the
            // sender: a systemd that does not read (busy, stuck) must not hold up the daemon, its stop above all.
            _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        }

        WatchdogInterval = ReadWatchdogInterval(environment);
    }

    /// <summary>How long a message waits for room in a full notify socket before it is dropped.</summary>
    public static readonly TimeSpan SendWait = TimeSpan.FromSeconds(1);

    /// <summary>As <see cref="SendWait"/> for READY=1, which systemd must get (else it fails the start at
    /// TimeoutStartSec=): a boot's busy manager may take a while to read.</summary>
    public static readonly TimeSpan ReadyWait = TimeSpan.FromSeconds(10);

    /// <summary>PeriodicTimer's shortest period.</summary>
    public static readonly TimeSpan MinWatchdogInterval = TimeSpan.FromMilliseconds(1);

    /// <summary>PeriodicTimer's longest period, 2^32-2 ms (about 49.7 days).</summary>
    public static readonly TimeSpan MaxWatchdogInterval = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    public bool IsEnabled => _socket is not null;

    /// <summary>How often to send WATCHDOG=1: half of $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, within
    /// what a PeriodicTimer takes (<see cref="MinWatchdogInterval"/> to <see cref="MaxWatchdogInterval"/>); null when
    /// the service has no WatchdogSec= or $WATCHDOG_PID names another process.</summary>
    public TimeSpan? WatchdogInterval { get; }

    /// <summary>Sends one state message. Returns false when there is no socket or the send failed (systemd
    /// gone, or its socket full for <paramref name="wait"/>, <see cref="SendWait"/> if null): notification is
    /// advisory, so a failure never stops the daemon.</summary>
    public bool Notify(string state, TimeSpan? wait = null)
    {
        if (_socket is null)
        {
            return false;
        }

        byte[] message = Encoding.UTF8.GetBytes(state);
        lock (_sendLock)
        {
            try
            {
                _socket.SendTimeout = (int)(wait ?? SendWait).TotalMilliseconds;
                return _socket.SendTo(message, SocketFlags.None, _endPoint!) == message.Length;
            }
            catch (SocketException)
            {
                return false;
            }
            catch (ObjectDisposedException)
            {
                return false;
            }
        }
    }

    /// <summary>STATUS= takes one line: newlines would start new assignments.</summary>
    public bool NotifyStatus(string status) => Notify("STATUS=" + status.ReplaceLineEndings(" "));

    public void Dispose() => _socket?.Dispose();

    private static TimeSpan? ReadWatchdogInterval(IReadOnlyDictionary<string, string> environment)
    {
        if (!environment.TryGetValue("WATCHDOG_USEC", out string? usecText)
            || !long.TryParse(usecText, NumberStyles.None, CultureInfo.InvariantCulture, out long usec) || usec <= 0)
        {
            return null;
        }

        if (environment.TryGetValue("WATCHDOG_PID", out string? pidText)
            && (!int.TryParse(pidText, NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || pid != Environment.ProcessId))
        {
            return null;
        }

        // Integer microseconds, clamped, so that no value systemd passes overflows a TimeSpan or faults the timer:
        // WatchdogSec=1ms can only be pinged every 1 ms, and one of 100 days or more every ~49 days is still in time.
        long halfUsec = Math.Clamp(usec / 2, MinWatchdogInterval.Ticks / TimeSpan.TicksPerMicrosecond, MaxWatchdogInterval.Ticks / TimeSpan.TicksPerMicrosecond);
        return TimeSpan.FromTicks(halfUsec * TimeSpan.TicksPerMicrosecond);
    }
}
