using System.Net.Sockets;

namespace ZramDaemon.Tests.Daemon;

/// <summary>Review: the verbs while other clients keep the control socket busy.</summary>
public sealed class ReviewDaemonControlBusyTests
{
    /// <summary>
    /// The control socket listens with a backlog of 16 (ControlServer.Start: <c>socket.Listen(16)</c>), and the CLI
    /// connects with <c>Socket.ConnectAsync</c> (src/ZramDaemon/Control/ControlClient.cs), a non-blocking connect: on a
    /// Unix stream socket whose backlog is momentarily full that fails at once with EAGAIN instead of waiting for the
    /// daemon to accept, as a blocking connect (socat, nc -U) does. ZramdCommandLine.Send then reports the running, healthy
    /// daemon as gone: "zramd: no daemon answers at PATH (Resource temporarily unavailable): is zramd running?", exit 1.
    /// So any burst of other control clients (monitoring polling several devices at once, a script's background jobs)
    /// makes <c>zramd status</c>, <c>reset</c>, <c>writeback</c>... fail spuriously with a false diagnosis. README: exit
    /// code 1 is a "runtime failure", and the CLI waits up to 30 s for the daemon's answer (ControlClient's timeout);
    /// expected: a full backlog is waited out (or retried) within that time, and the verb succeeds. Here three threads
    /// connect and close in a loop, each connection being served at once by the daemon; most CLI runs failed (of six, at least one failed in every run).
    /// </summary>
    [Fact]
    public void A_verb_succeeds_while_other_clients_keep_connecting_to_the_control_socket()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"]);
        using var stop = new CancellationTokenSource();
        Thread[] others = StartConnecting(daemon.ControlPath, stop.Token);

        var results = new List<(int Code, string Stdout, string Stderr)>();
        try
        {
            Thread.Sleep(500);
            for (int i = 0; i < 6; i++)
            {
                results.Add(daemon.Cli("status", "--raw"));
            }
        }
        finally
        {
            stop.Cancel();
            foreach (Thread other in others)
            {
                other.Join();
            }
        }

        // The daemon itself was fine all along: it answers as soon as the others stop.
        (int after, _, string afterError) = daemon.Cli("status", "--raw");
        Assert.True(after == 0, afterError);
        Assert.False(daemon.Process.HasExited);

        foreach ((int code, string stdout, string stderr) in results)
        {
            Assert.True(code == 0, $"zramd status failed while other clients were connecting (exit {code}): {stderr.Trim()}");
            Assert.StartsWith("NAME ALGORITHM", stdout, StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// The control socket's accept thread outran the thread pool that serves its connections: three clients connecting
    /// and closing in a loop made zramd hold thousands of accepted connections not yet served, until accept(2) itself
    /// failed with EMFILE (20,000 descriptors here within seconds; the full suite once saw the verb after it refused).
    /// Every other part of the daemon needs descriptors too (NBD clients, the backing file). Now at most 256 are in
    /// service and the rest wait in the backlog: the daemon's descriptors stay bounded.
    /// </summary>
    [Fact]
    public void A_burst_of_control_clients_does_not_use_up_the_daemons_descriptors()
    {
        using RunningDaemon daemon = RunningDaemon.Start(["--size", "16M"]);
        string fds = $"/proc/{daemon.Process.Id}/fd";
        int baseline = Directory.GetFiles(fds).Length;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(4));
        Thread[] others = StartConnecting(daemon.ControlPath, stop.Token);

        int most = baseline;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                most = Math.Max(most, Directory.GetFiles(fds).Length);
            }
            catch (IOException)
            {
                // A descriptor closed while listed.
            }

            Thread.Sleep(20);
        }

        foreach (Thread other in others)
        {
            other.Join();
        }

        Assert.False(daemon.Process.HasExited);
        Assert.DoesNotContain("accept failed", daemon.Process.StandardError, StringComparison.Ordinal);
        Assert.True(most < baseline + 512, $"{most} descriptors open at the most, {baseline} before the burst");
        Assert.Equal(0, daemon.Cli("status").ExitCode);
    }

    /// <summary>Three threads that connect to <paramref name="path"/> and close, in a loop, until <paramref name="stop"/>.</summary>
    private static Thread[] StartConnecting(string path, CancellationToken stop)
    {
        var endPoint = new UnixDomainSocketEndPoint(path);
        Thread[] others = [.. Enumerable.Range(0, 3).Select(_ => new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { Blocking = false };
                try
                {
                    socket.Connect(endPoint);
                }
                catch (SocketException)
                {
                    // The backlog is full: this client gives up on this connection and tries again.
                }
            }
        }))];
        foreach (Thread other in others)
        {
            other.Start();
        }

        return others;
    }
}
