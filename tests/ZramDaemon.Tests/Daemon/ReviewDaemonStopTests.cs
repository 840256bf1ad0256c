using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace ZramDaemon.Tests.Daemon;

/// <summary>Review: SIGTERM while a control client that was already answered keeps its connection open.</summary>
public sealed class ReviewDaemonStopTests
{
    /// <summary>
    /// README (Under systemd): "SIGTERM: stop accepting, finish the requests in flight (10 s grace), close connections,
    /// wait for a device call still running to end (and for the control verbs running), free the devices, exit 0."
    /// A control client that sent <c>status</c>, got its reply and simply keeps its socket open has no verb running.
    /// But ControlServer.ServeAsync (src/ZramDaemon/Control/ControlServer.cs, the loop after the reply that "reads what
    /// is left" before closing) waits for that client's end of stream with a fresh 10-second token that the stop does
    /// not cancel, and ControlServer.DisposeAsync waits for every ServeAsync: the daemon, with no NBD client and nothing
    /// running, takes the full 10 s to exit (a script or monitoring agent that keeps its control connection open
    /// stretches every stop by 10 s; with a 10 s TimeoutStopSec systemd would SIGKILL it). Expected: the stop cancels
    /// that wait as it cancels the read of a request, and the daemon exits at once. Measured: 10.05 s, every run.
    /// </summary>
    [Fact]
    public void Sigterm_does_not_wait_for_an_answered_control_client_that_keeps_its_connection_open()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"]);
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(daemon.ControlPath));
        client.ReceiveTimeout = 20_000;
        client.Send("status\n"u8);

        // The whole reply (one line), then nothing: the socket stays open, as a client that keeps it for later.
        var reply = new StringBuilder();
        byte[] buffer = new byte[4096];
        while (!reply.ToString().EndsWith('\n'))
        {
            int n = client.Receive(buffer);
            Assert.True(n > 0, "the daemon closed without a reply");
            reply.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }

        Assert.Contains("\"ok\":true", reply.ToString(), StringComparison.Ordinal);

        // Counted from the reply: the answered client's drain (10 s, the bug) began before it was sent, so that a slow
        // kill(1) or signal delivery on a loaded machine cannot hide it.
        var clock = Stopwatch.StartNew();

        daemon.Process.Terminate();

        // Nothing runs: no NBD client, no verb. A stop takes well under a second here; 9.5 s from the reply leaves room
        // for a loaded machine's kill(1) and is still short of the 10 s the answered client's drain holds the stop for.
        TimeSpan left = TimeSpan.FromSeconds(9.5) - clock.Elapsed;
        int exitCode;
        try
        {
            exitCode = daemon.Process.WaitForExit(left > TimeSpan.Zero ? left : TimeSpan.Zero);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"zramd did not exit within 9.5 s of its reply, SIGTERM sent with nothing running: it waits for a control client it has already answered (stderr:\n{daemon.Process.StandardError})");
            return;
        }

        Assert.Equal(0, exitCode);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(9.5), clock.Elapsed.ToString());
    }
}
