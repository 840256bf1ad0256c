using System.Net.Sockets;
using System.Text;
using ZramDaemon.Systemd;

namespace ZramDaemon.Tests.Systemd;

public sealed class SystemdNotifierTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zramd-notify-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Receive(Socket socket)
    {
        byte[] buffer = new byte[4096];
        socket.ReceiveTimeout = 5000;
        int n = socket.Receive(buffer);
        return Encoding.UTF8.GetString(buffer, 0, n);
    }

    [Fact]
    public void Sends_each_state_as_one_datagram_to_a_path()
    {
        string path = Path.Combine(_dir, "notify");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));

        using var notifier = new SystemdNotifier(new Dictionary<string, string> { ["NOTIFY_SOCKET"] = path });
        Assert.True(notifier.IsEnabled);
        Assert.True(notifier.Notify("READY=1"));
        Assert.True(notifier.NotifyStatus("serving zram0\non two lines"));
        Assert.Equal("READY=1", Receive(listener));
        Assert.Equal("STATUS=serving zram0 on two lines", Receive(listener));
    }

    [Fact]
    public void Reaches_an_abstract_socket_named_with_at()
    {
        string name = "zramd-test-" + Guid.NewGuid().ToString("N");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint("\0" + name));

        using var notifier = new SystemdNotifier(new Dictionary<string, string> { ["NOTIFY_SOCKET"] = "@" + name });
        Assert.True(notifier.Notify("STOPPING=1"));
        Assert.Equal("STOPPING=1", Receive(listener));
    }

    [Fact]
    public void Without_notify_socket_nothing_is_sent()
    {
        using var notifier = new SystemdNotifier(new Dictionary<string, string>());
        Assert.False(notifier.IsEnabled);
        Assert.False(notifier.Notify("READY=1"));
        Assert.Null(notifier.WatchdogInterval);
    }

    [Fact]
    public void A_vanished_listener_does_not_throw()
    {
        using var notifier = new SystemdNotifier(new Dictionary<string, string> { ["NOTIFY_SOCKET"] = Path.Combine(_dir, "gone") });
        Assert.False(notifier.Notify("READY=1"));
    }

    [Fact]
    public void Watchdog_interval_is_half_of_watchdog_usec_for_this_process_only()
    {
        var ours = new SystemdNotifier(new Dictionary<string, string> { ["WATCHDOG_USEC"] = "3000000", ["WATCHDOG_PID"] = Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        Assert.Equal(TimeSpan.FromSeconds(1.5), ours.WatchdogInterval);
        var noPid = new SystemdNotifier(new Dictionary<string, string> { ["WATCHDOG_USEC"] = "5000" });
        Assert.Equal(TimeSpan.FromMicroseconds(2500), noPid.WatchdogInterval);
        var other = new SystemdNotifier(new Dictionary<string, string> { ["WATCHDOG_USEC"] = "3000000", ["WATCHDOG_PID"] = "1" });
        Assert.Null(other.WatchdogInterval);
        var bad = new SystemdNotifier(new Dictionary<string, string> { ["WATCHDOG_USEC"] = "soon" });
        Assert.Null(bad.WatchdogInterval);
    }

    /// <summary>Half of $WATCHDOG_USEC is kept within what a PeriodicTimer takes, 1 ms to 2^32-2 ms, and no value
    /// overflows: WatchdogSec=1ms is pinged every 1 ms, anything from about 99 days on every ~49.7 days.</summary>
    [Theory]
    [InlineData("1", 1_000)]
    [InlineData("1000", 1_000)]
    [InlineData("2000", 1_000)]
    [InlineData("8640000000000", 4_294_967_294_000)]
    [InlineData("9223372036854775807", 4_294_967_294_000)]
    public void Watchdog_interval_is_clamped_to_what_the_timer_takes(string watchdogUsec, long expectedUsec)
    {
        var notifier = new SystemdNotifier(new Dictionary<string, string> { ["WATCHDOG_USEC"] = watchdogUsec });
        Assert.Equal(TimeSpan.FromTicks(expectedUsec * TimeSpan.TicksPerMicrosecond), notifier.WatchdogInterval);
        using var timer = new PeriodicTimer(notifier.WatchdogInterval!.Value);
    }
}
